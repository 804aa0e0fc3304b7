// The tab's stylesheet, close to TensorBoard's own look: light grey page, white compact cards, Roboto; in
// TensorBoard's dark mode (body[data-theme=dark], see theme.ts) its dark greys.

export const STYLE = `
:root { color-scheme: light; --page: #f5f5f5; --card: #fff; --line: #e0e0e0; --text: #212121; --muted: #616161; --field: #bdbdbd;
  --hover: #fff3e0; --accent: #f57c00; --warn-bg: #fff8e1; --warn-line: #ffe082; --warn-text: #5d4037; --status: #e65100; }
body[data-theme=dark] { color-scheme: dark; --page: #202124; --card: #303030; --line: #474747; --text: #e8e8e8; --muted: #bdbdbd;
  --field: #616161; --hover: #4a3a28; --accent: #ff9800; --warn-bg: #3b3222; --warn-line: #7a5c1e; --warn-text: #ffe0b2; --status: #ffab40; }
[hidden] { display: none !important; }
body { margin: 0; background: var(--page); color: var(--text); font: 13px/1.4 Roboto, "Helvetica Neue", Arial, sans-serif; }
.tb-xai { padding: 0 16px 24px; max-width: 1400px; margin: 0 auto; }
.controls { position: sticky; top: 0; z-index: 2; padding: 10px 16px 6px; margin: 0 -16px 8px; background: var(--card);
  border-bottom: 1px solid var(--line); }
.control-row { display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: flex-end; }
.field { display: inline-flex; flex-direction: column; gap: 2px; font-size: 11px; color: var(--muted); }
.field.check { flex-direction: row; align-items: center; gap: 4px; font-size: 13px; color: var(--text); padding-bottom: 4px; }
.probe-field { flex-direction: row; align-items: flex-end; gap: 2px; }
select, input[type=number], button { font: inherit; font-size: 13px; color: var(--text); }
select, input[type=number] { height: 28px; padding: 0 6px; border: 1px solid var(--field); border-radius: 4px; background: var(--card); max-width: 260px; }
input[type=number] { width: 56px; }
button { height: 28px; padding: 0 10px; border: 1px solid var(--field); border-radius: 4px; background: var(--card); cursor: pointer; }
button:hover:not(:disabled) { background: var(--hover); border-color: var(--accent); }
button:disabled { color: var(--muted); opacity: 0.6; cursor: default; }
:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }
.step-probe { width: 28px; padding: 0; }
.runs-field { position: relative; }
.run-list { position: absolute; top: 100%; left: 0; z-index: 4; min-width: 220px; max-height: 320px; overflow: auto; margin-top: 2px;
  padding: 6px 8px; background: var(--card); border: 1px solid var(--field); border-radius: 4px; box-shadow: 0 2px 8px rgba(0,0,0,0.25); }
.run-option { display: flex; align-items: center; gap: 6px; font-size: 13px; color: var(--text); padding: 2px 0; white-space: nowrap; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; flex: none; }
.run-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin-top: 6px; font-size: 12px; }
.run-chip { display: inline-flex; align-items: center; gap: 5px; }
.config { margin: 4px 0 0; font-size: 11px; color: var(--muted); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.message, .live { margin: 16px 0; font-size: 14px; color: var(--muted); }
.live { margin: 0 0 8px; font-size: 12px; }
.failures { margin: 0 0 8px; padding: 6px 12px 6px 28px; background: var(--warn-bg); border: 1px solid var(--warn-line); border-radius: 4px;
  font-size: 12px; color: var(--warn-text); }
.failures li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.cards { display: grid; grid-template-columns: minmax(0, 1fr); gap: 12px; }
@media (min-width: 1100px) { .cards { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
  #evolution, #probe, #agreement { grid-column: 1 / -1; } }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 4px; padding: 10px 14px 12px; min-width: 0; }
.card header { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
.card h2 { margin: 0; font-size: 14px; font-weight: 500; flex: 1 1 auto; }
.tools { display: flex; gap: 10px; align-items: center; }
.tools .field { flex-direction: row; align-items: center; gap: 6px; }
.exports { display: flex; gap: 4px; }
.exports button { height: 22px; padding: 0 6px; font-size: 11px; color: var(--muted); }
.note { margin: 4px 0 8px; color: var(--muted); font-size: 12px; }
.status { margin: 4px 0; color: var(--status); font-size: 12px; }
.status:empty { display: none; }
.card[aria-busy] .figure { opacity: 0.5; }
.figure { position: relative; color: var(--text); }
.heatmap, .filmstrip, .lines { position: relative; }
.heatmap svg, .filmstrip svg { position: absolute; left: 0; top: 0; }
.heatmap svg.marks { pointer-events: none; }
.heatmap canvas, .filmstrip canvas { position: absolute; image-rendering: pixelated; }
.heatmap canvas { cursor: crosshair; }
.filmstrip svg { pointer-events: none; }
.filmstrip { margin-bottom: 6px; }
.lines svg, .bars { display: block; overflow: visible; }
svg.title { display: block; }
svg text { font-family: Roboto, "Helvetica Neue", Arial, sans-serif; }
.tooltip { position: absolute; z-index: 3; pointer-events: none; background: rgba(33, 33, 33, 0.92); color: #fff; padding: 4px 8px;
  border-radius: 3px; font-size: 12px; white-space: nowrap; max-width: 420px; overflow: hidden; text-overflow: ellipsis; }
body[data-theme=dark] .tooltip { background: rgba(250, 250, 250, 0.94); color: #212121; }
.player { display: flex; align-items: center; gap: 10px; margin: 0 0 6px; }
.player input[type=range] { flex: 1 1 auto; max-width: 480px; accent-color: var(--accent); }
.step-label { min-width: 70px; font-variant-numeric: tabular-nums; color: var(--text); }
.panels { display: flex; gap: 16px; flex-wrap: wrap; margin-top: 8px; }
.panel { min-width: 0; }
.agreement { display: flex; gap: 24px; align-items: flex-start; }
.agreement.stacked { flex-direction: column; }
.matrix { position: relative; flex: none; }
.matrix svg { display: block; }
.matrix .cell { cursor: default; }
.panel canvas.overlay { display: block; image-rendering: pixelated; border: 1px solid var(--line); }
.panel svg { display: block; }
.panel .rows { display: flex; align-items: flex-start; }
`;
