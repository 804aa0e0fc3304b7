// The findings card, first on the page: what changed in the run beyond the noise floor, as a timeline over
// steps (one lane per kind of event, or per method) and as a short list in the server's words. Clicking an
// event opens the card, method, input, step and probe that show it. The server finds the events (`findings`
// route, the same list as `run.findings()`); this card only draws them.

import { scaleLinear } from 'd3-scale';
import { axisBottom } from 'd3-axis';
import { select } from 'd3-selection';
import { lineColors } from '../colors';
import { el, setOptions, shorten, svgElement } from '../dom';
import { fileStem } from '../export';
import { Finding, Findings, RunInfo, fetchFindings } from '../model';
import { ink } from '../theme';
import { Card, Table } from './card';
import { Tooltip } from './tooltip';
import { Draw, View, ViewContext } from './view';

/** Findings listed before "Show all". */
export const LISTED = 8;
const LANE = 24;
const AXIS = 30;
const KEY = 22;

/** How a kind of event is named on its lane; a kind the server added since is named by its identifier. */
const KIND_NAMES: Record<string, string> = {
  drift: 'ranking drift',
  topk_enter: 'entered the top-k',
  topk_leave: 'left the top-k',
  sanity_failed: 'sanity check failed',
  methods_disagree: 'methods disagree',
  prediction_flip: 'prediction flipped',
  explanation_changed: 'explanation changed, prediction kept',
  prediction_flipped_explanation_stable: 'prediction flipped, explanation kept',
};

export function kindName(kind: string): string {
  return KIND_NAMES[kind] ?? kind.replace(/_/g, ' ');
}

/** The lane of a finding when lanes are methods: its method, or the probes' predictions for a flip. */
function methodLane(f: Finding): string {
  return f.method === null ? 'predictions' : f.method.split(',').join(' & ');
}

/** Every step the run logged (attributions or predictions), ascending. */
function loggedSteps(info: RunInfo): number[] {
  const steps = new Set<number>(info.prediction_steps);
  for (const m of info.methods) for (const i of m.inputs) i.steps.forEach((s) => steps.add(s));
  return [...steps].sort((a, b) => a - b);
}

export type Lanes = 'kind' | 'method';

export class FindingsView implements View {
  readonly card: Card;
  private readonly lanes = el('select', { name: 'finding-lanes', 'aria-label': 'lanes' });
  private readonly svg = svgElement();
  private readonly timeline = el('div', { class: 'timeline' });
  private readonly list = el('ol', { class: 'finding-list', 'aria-label': 'findings' });
  private readonly more = el('button', { type: 'button', class: 'more' });
  private readonly tooltip: Tooltip;
  private current: { answer: Findings; info: RunInfo } | null = null;
  private expanded = false;
  private chosen: Finding | null = null;
  private width = 0;

  /** `onOpen` selects what shows a finding (its `open`) and scrolls to that card. */
  constructor(private readonly onOpen: (finding: Finding) => void) {
    this.card = new Card({
      id: 'findings',
      title: 'Findings',
      fileName: () => fileStem('findings', this.current?.info.run ?? ''),
      table: () => this.table(),
    });
    this.timeline.append(this.svg);
    this.tooltip = new Tooltip(this.timeline);
    this.card.tools.append(el('label', { class: 'field' }, el('span', {}, 'Lanes'), this.lanes));
    setOptions(this.lanes, [{ value: 'kind', label: 'one per kind' }, { value: 'method', label: 'one per method' }], 'kind');
    this.lanes.addEventListener('change', () => this.current && this.draw(this.width));
    this.more.addEventListener('click', () => {
      this.expanded = !this.expanded;
      this.drawList();
    });
  }

  clear(): void {
    this.current = null;
    this.chosen = null;
    this.card.clear();
  }

  async load(context: ViewContext): Promise<Draw> {
    const info = context.primary.info;
    const answer = await fetchFindings(info);
    return (width) => {
      if (this.current?.info.run !== info.run) {
        this.expanded = false;
        this.chosen = null;
      }
      this.current = { answer, info };
      this.draw(width);
    };
  }

  private draw(width: number): void {
    this.width = width;
    const { answer, info } = this.current!;
    const found = answer.findings;
    const steps = loggedSteps(info);
    const methods = info.methods.filter((m) => m.inputs.length > 0).map((m) => m.method);
    if (!found.length) {
      this.card.note.textContent = '';
      const checked = answer.kinds.map(kindName).join('; ');
      this.card.figure.replaceChildren(el('div', { class: 'no-findings' },
        el('p', { class: 'empty-title' }, 'No findings beyond the noise floor'),
        el('p', {}, `Checked ${methods.length} method${methods.length === 1 ? '' : 's'} (${methods.join(', ')}) over ${steps.length} logged step${steps.length === 1 ? '' : 's'} for: ${checked || 'every kind of event'}. ` +
          'A change inside its noise floor (the bootstrap over probes, and the second seed of sampling methods) is never reported.'),
      ));
      this.card.markDrawn(`${info.run}|0`);
      return;
    }
    const kinds = new Set(found.map((f) => f.kind)).size;
    this.card.note.textContent = `${found.length} finding${found.length === 1 ? '' : 's'} of ${kinds} kind${kinds === 1 ? '' : 's'} beyond the noise floor, ` +
      `over steps ${steps[0] ?? found[0].step}–${steps[steps.length - 1] ?? found[found.length - 1].step}. Click one to open the view, step and probe that show it.`;
    this.drawTimeline(found, answer.kinds, methods, steps, width);
    this.drawList();
    this.card.figure.replaceChildren(this.timeline, this.list, this.more);
    this.card.markDrawn(`${info.run}|${found.length}`);
  }

  /** The colours the marks use now, each with what it stands for (in first-seen order). */
  private colorKey(found: Finding[]): { name: string; color: string }[] {
    const byMethod = this.lanes.value === 'method';
    const key = new Map<string, string>();
    for (const f of found) {
      const name = byMethod ? kindName(f.kind) : f.method === null ? 'predictions' : f.method.includes(',') ? 'two methods' : f.method;
      if (!key.has(name)) key.set(name, this.colorOf(f));
    }
    return [...key].map(([name, color]) => ({ name, color }));
  }

  /** The colour of a finding: its method's on kind lanes, its kind's on method lanes. */
  private colorOf(f: Finding): string {
    const { answer, info } = this.current!;
    if (this.lanes.value === 'method') {
      const i = answer.kinds.indexOf(f.kind);
      return lineColors[(i < 0 ? answer.kinds.length : i) % lineColors.length];
    }
    if (f.method === null || f.method.includes(',')) return ink().rule;
    const i = info.methods.findIndex((m) => m.method === f.method);
    return lineColors[Math.max(0, i) % lineColors.length];
  }

  private drawTimeline(found: Finding[], kinds: string[], methods: string[], steps: number[], width: number): void {
    const byMethod = this.lanes.value === 'method';
    const laneOf = (f: Finding) => (byMethod ? methodLane(f) : f.kind);
    const present = new Set(found.map(laneOf));
    const order = byMethod ? [...methods, ...[...present].filter((l) => !methods.includes(l)).sort()] : [...kinds, ...[...present].filter((k) => !kinds.includes(k))];
    const lanes = order.filter((l) => present.has(l));
    const label = (lane: string) => (byMethod ? lane : kindName(lane));
    const measure = document.createElement('canvas').getContext('2d')!;
    measure.font = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
    const left = Math.min(Math.round(width * 0.4), 12 + Math.max(...lanes.map((l) => measure.measureText(label(l)).width)));
    const right = 16;
    const key = this.colorKey(found);
    const height = lanes.length * LANE + AXIS + (key.length ? KEY : 0);
    const lo = Math.min(steps[0] ?? found[0].step, found[0].step);
    const hi = Math.max(steps[steps.length - 1] ?? found[found.length - 1].step, found[found.length - 1].step);
    const x = scaleLinear().domain([lo, hi === lo ? lo + 1 : hi]).range([left + 8, Math.max(left + 40, width - right)]);
    const svg = select(this.svg).attr('width', width).attr('height', height).attr('class', 'findings-timeline');
    svg.selectAll('*').remove();
    this.timeline.style.height = `${height}px`;
    lanes.forEach((lane, i) => {
      const y = i * LANE + LANE / 2;
      svg.append('line').attr('x1', left).attr('x2', width - right).attr('y1', y).attr('y2', y).attr('stroke', ink().grid);
      svg.append('text').attr('x', left - 6).attr('y', y).attr('dy', '0.35em').attr('text-anchor', 'end').attr('font-size', 11)
        .attr('fill', ink().text).attr('data-lane', lane).text(measure.measureText(label(lane)).width <= left - 8 ? label(lane) : shorten(label(lane), Math.floor((left - 6) / 6)))
        .append('title').text(label(lane));
    });
    const ticks = x.ticks(Math.max(2, Math.floor((width - left) / 60))).filter(Number.isInteger);
    svg.append('g').attr('transform', `translate(0,${lanes.length * LANE + 2})`)
      .call(axisBottom(x).tickValues(ticks).tickFormat((d) => String(d)).tickSizeOuter(0));
    svg.append('text').attr('x', (left + width - right) / 2).attr('y', lanes.length * LANE + AXIS - 2).attr('text-anchor', 'middle')
      .attr('font-size', 11).attr('fill', ink().muted).text('step');
    // What the colours mean: the methods on kind lanes, the kinds on method lanes.
    let kx = left;
    const legend = svg.append('g').attr('class', 'legend').attr('font-size', 11);
    for (const { name, color } of key) {
      legend.append('circle').attr('cx', kx + 5).attr('cy', height - 8).attr('r', 5).attr('fill', color);
      legend.append('text').attr('x', kx + 14).attr('y', height - 8).attr('dy', '0.35em').attr('fill', ink().text).text(name);
      kx += 28 + measure.measureText(name).width;
    }
    // One marker per lane and step; several events there share it (the count in it, every message on hover).
    const groups = new Map<string, Finding[]>();
    for (const f of found) {
      const key = `${laneOf(f)}\u0000${f.step}`;
      groups.set(key, [...(groups.get(key) ?? []), f]);
    }
    for (const [key, group] of groups) {
      const lane = key.split('\u0000')[0];
      const cx = x(group[0].step);
      const cy = lanes.indexOf(lane) * LANE + LANE / 2;
      const chosen = this.chosen !== null && group.includes(this.chosen);
      const g = svg.append('g').attr('class', 'finding-mark').attr('data-lane', lane).attr('data-step', group[0].step)
        .attr('data-count', group.length).attr('tabindex', 0).attr('role', 'button')
        .attr('aria-label', group.map((f) => f.message).join('; ')).style('cursor', 'pointer');
      g.append('circle').attr('cx', cx).attr('cy', cy).attr('r', group.length > 1 ? 8 : 6).attr('fill', this.colorOf(group[0]))
        .attr('stroke', chosen ? ink().strong : ink().card).attr('stroke-width', chosen ? 2.5 : 1.5);
      if (group.length > 1) {
        g.append('text').attr('x', cx).attr('y', cy).attr('dy', '0.35em').attr('text-anchor', 'middle').attr('font-size', 9)
          .attr('fill', '#fff').attr('pointer-events', 'none').text(group.length);
      }
      g.on('mouseenter', () => {
        const shown = group.slice(0, 6).map((f) => f.message);
        if (group.length > shown.length) shown.push(`… and ${group.length - shown.length} more`);
        this.tooltip.show(shown, cx, cy);
      }).on('mouseleave', () => this.tooltip.hide())
        .on('click', () => this.open(group[0]))
        .on('keydown', (event: KeyboardEvent) => {
          if (event.key === 'Enter' || event.key === ' ') {
            event.preventDefault();
            this.open(group[0]);
          }
        });
    }
  }

  private drawList(): void {
    const found = this.current!.answer.findings;
    const chosenAt = this.chosen === null ? -1 : found.indexOf(this.chosen);
    const count = this.expanded ? found.length : Math.max(LISTED, chosenAt + 1);
    this.list.replaceChildren(...found.slice(0, count).map((f, i) => {
      const button = el('button', { type: 'button', class: 'finding', 'data-index': i, 'data-kind': f.kind, 'data-step': f.step, title: `${kindName(f.kind)}: open the ${f.open.view} card at step ${f.open.step ?? f.step}` },
        el('span', { class: 'swatch', style: `background:${this.colorOf(f)}` }), f.message);
      if (f === this.chosen) button.setAttribute('aria-current', 'true');
      button.addEventListener('click', () => this.open(f));
      return el('li', {}, button);
    }));
    this.more.hidden = found.length <= LISTED;
    this.more.textContent = this.expanded ? `Show the first ${LISTED}` : `Show all ${found.length} findings`;
  }

  private open(finding: Finding): void {
    this.chosen = finding;
    this.tooltip.hide();
    this.draw(this.width);
    this.onOpen(finding);
  }

  private table(): Table | null {
    if (!this.current) return null;
    return {
      header: ['step', 'kind', 'method', 'input', 'feature', 'probe', 'value', 'noise', 'message'],
      rows: this.current.answer.findings.map((f) => [f.step, f.kind, f.method, f.input, f.feature, f.probe, f.value, f.noise, f.message]),
    };
  }
}

export const FINDINGS_STYLE = `
#findings, #quality { grid-column: 1 / -1; }
.timeline { position: relative; }
.timeline svg { display: block; overflow: visible; }
.finding-mark:focus-visible circle { stroke: var(--accent); stroke-width: 3; }
.finding-list { list-style: none; margin: 8px 0 0; padding: 0; display: grid; gap: 2px; }
.finding-list button.finding { display: flex; align-items: center; gap: 8px; width: 100%; height: auto; min-height: 24px; padding: 2px 8px;
  text-align: left; border-color: transparent; background: transparent; font-size: 12px; line-height: 1.35; }
.finding-list button.finding:hover { border-color: var(--accent); }
.finding-list button.finding[aria-current] { background: var(--hover); border-color: var(--accent); }
.finding-list .swatch { border-radius: 50%; }
button.more { margin-top: 4px; height: 24px; font-size: 12px; color: var(--muted); }
.no-findings { padding: 4px 0; color: var(--muted); font-size: 12px; }
.no-findings .empty-title { margin: 0 0 2px; font-size: 14px; color: var(--text); }
.no-findings p { margin: 0; }
`;
