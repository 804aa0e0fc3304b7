// The tab's stylesheet, close to TensorBoard's own look: light grey page, white compact cards, Roboto.

export const STYLE = `
:root { color-scheme: light; }
[hidden] { display: none !important; }
body { margin: 0; background: #f5f5f5; color: #212121; font: 13px/1.4 Roboto, "Helvetica Neue", Arial, sans-serif; }
.tb-xai { padding: 0 16px 24px; max-width: 1400px; margin: 0 auto; }
.controls { position: sticky; top: 0; z-index: 2; display: flex; flex-wrap: wrap; gap: 6px 16px; align-items: flex-end;
  padding: 10px 16px; margin: 0 -16px 8px; background: #fff; border-bottom: 1px solid #e0e0e0; }
.field { display: inline-flex; flex-direction: column; gap: 2px; font-size: 11px; color: #616161; }
.field.check { flex-direction: row; align-items: center; gap: 4px; font-size: 13px; color: #212121; padding-bottom: 4px; }
.probe-field { flex-direction: row; align-items: flex-end; gap: 2px; }
select, input[type=number], button { font: inherit; font-size: 13px; color: #212121; }
select, input[type=number] { height: 28px; padding: 0 6px; border: 1px solid #bdbdbd; border-radius: 4px; background: #fff; max-width: 260px; }
input[type=number] { width: 56px; }
button { height: 28px; padding: 0 10px; border: 1px solid #bdbdbd; border-radius: 4px; background: #fff; cursor: pointer; }
button:hover:not(:disabled) { background: #fff3e0; border-color: #f57c00; }
button:disabled { color: #9e9e9e; cursor: default; }
:focus-visible { outline: 2px solid #f57c00; outline-offset: 1px; }
.step-probe { width: 28px; padding: 0; }
.message { margin: 24px 0; font-size: 14px; color: #616161; }
.failures { margin: 0 0 8px; padding: 6px 12px 6px 28px; background: #fff8e1; border: 1px solid #ffe082; border-radius: 4px;
  font-size: 12px; color: #5d4037; }
.failures li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.cards { display: grid; grid-template-columns: minmax(0, 1fr); gap: 12px; }
@media (min-width: 1100px) { .cards { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
  #evolution, #probe, #agreement { grid-column: 1 / -1; } }
.card { background: #fff; border: 1px solid #e0e0e0; border-radius: 4px; padding: 10px 14px 12px; min-width: 0; }
.card header { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; }
.card h2 { margin: 0; font-size: 14px; font-weight: 500; flex: 1 1 auto; }
.tools { display: flex; gap: 10px; align-items: center; }
.tools .field { flex-direction: row; align-items: center; gap: 6px; }
.exports { display: flex; gap: 4px; }
.exports button { height: 22px; padding: 0 6px; font-size: 11px; color: #616161; }
.note { margin: 4px 0 8px; color: #616161; font-size: 12px; }
.status { margin: 4px 0; color: #e65100; font-size: 12px; }
.status:empty { display: none; }
.card[aria-busy] .figure { opacity: 0.5; }
.figure { position: relative; }
.heatmap, .filmstrip, .lines { position: relative; }
.heatmap svg, .filmstrip svg { position: absolute; left: 0; top: 0; }
.heatmap svg.marks { pointer-events: none; }
.heatmap canvas, .filmstrip canvas { position: absolute; image-rendering: pixelated; }
.heatmap canvas { cursor: crosshair; }
.filmstrip svg { pointer-events: none; }
.lines svg, .bars { display: block; overflow: visible; }
svg text { font-family: Roboto, "Helvetica Neue", Arial, sans-serif; }
.tooltip { position: absolute; z-index: 3; pointer-events: none; background: rgba(33, 33, 33, 0.92); color: #fff; padding: 4px 8px;
  border-radius: 3px; font-size: 12px; white-space: nowrap; max-width: 420px; overflow: hidden; text-overflow: ellipsis; }
.player { display: flex; align-items: center; gap: 10px; margin: 0 0 6px; }
.player input[type=range] { flex: 1 1 auto; max-width: 480px; accent-color: #f57c00; }
.step-label { min-width: 70px; font-variant-numeric: tabular-nums; color: #424242; }
.panels { display: flex; gap: 24px; flex-wrap: wrap; margin-top: 8px; }
.panel { min-width: 0; }
.agreement { display: flex; gap: 24px; align-items: flex-start; }
.agreement.stacked { flex-direction: column; }
.matrix { position: relative; flex: none; }
.matrix svg { display: block; }
.matrix .cell { cursor: default; }
.panel canvas.overlay { display: block; image-rendering: pixelated; border: 1px solid #e0e0e0; }
.panel svg { display: block; }
.panel .rows { display: flex; align-items: flex-start; }
`;
