// A text input's probe drawn as its text: each token a chip coloured by its attribution at one step (the same
// colour scales as every other card: diverging blue-red when signed, the sequential ramp for magnitudes), padding
// dimmed and counted as padding (a run of it is one chip, "padding ×48"), long texts wrapped. Under it, the same
// text across steps: one row of cells per step, lined up under the tokens, so a word that gains weight over
// training lights up down its column. Everything is SVG (exports carry it); every token string goes in as text
// content or an attribute value, never through HTML parsing, so a token like `<script>` shows as written.
//
// Also the small text rules other cards use: a probe's first words (the probe menu), the CSV of a text probe,
// and compared runs' word rankings lined up by word.

import { rgb } from 'd3-color';
import { select } from 'd3-selection';
import { ColorScale, attributionScale } from '../colors';
import { el, formatValue, shorten, svgElement } from '../dom';
import { Evolution, InputInfo, Num, Probe, RunInfo, elementNames } from '../model';
import { ink } from '../theme';
import { Table } from './card';
import { evenlySpaced } from './filmstrip';
import { drawColorLegend } from './legend';
import { Tooltip } from './tooltip';

/** The modality of integer token inputs (tb_xai.modalities.TEXT). */
export const TEXT = 'text';

export type TextProbe = Probe & { tokens: string[]; padding: boolean[] };

/** Whether a probe answer is a text input's: the server sent its tokens and padding. */
export function isTextProbe(probe: Probe): probe is TextProbe {
  return probe.modality === TEXT && Array.isArray(probe.tokens) && Array.isArray(probe.padding)
    && probe.tokens.length === probe.padding.length;
}

/** The listing of `input` of `method` in `run`, if it has one. */
export function inputInfo(run: RunInfo, method: string, input: string): InputInfo | undefined {
  return run.methods.find((m) => m.method === method)?.inputs.find((i) => i.input === input);
}

/** Whether `input` of `method` in `run` is a text input. */
export function isTextInput(run: RunInfo, method: string, input: string): boolean {
  return inputInfo(run, method, input)?.modality === TEXT;
}

const FONT_PX = 12;
const FONT = `${FONT_PX}px Roboto, "Helvetica Neue", Arial, sans-serif`;
const CHIP = 20; // chip height
const LINE = 25; // line pitch of the text
const GAP = 3; // between chips
const INSET = 5; // text inside a chip
const MAX_LABEL = 24; // characters of a token drawn; the tooltip has all
const GUTTER = 64; // the strip's step labels
const HEADER = 20; // the strip's token row above its cells
const ROW = 11; // the strip's row pitch
const BAND_GAP = 10;
const MAX_ROWS = 24; // steps in the strip at most (evenly spaced, the selected one always)
const STRIP_HEIGHT = 640; // the strip's cells fit about this height: fewer rows for a long text
const PADDING_KEY = 300; // the padding key's width beside the colour bar

/** A token as drawn: whitespace made visible, an empty string as ∅, long ones cut. */
function visible(token: string): string {
  return token === '' ? '∅' : shorten(token.replace(/\s/g, '␣'), MAX_LABEL);
}

/** One drawn piece of the text: a token, or a run of consecutive padding positions. */
interface Chip {
  first: number; // the first position it covers
  count: number; // how many positions (1 for a token)
  pad: boolean;
  label: string;
  token: string; // as logged
  x: number;
  line: number;
  width: number;
}

/** The text's chips, flowed into lines of `width` pixels. */
function layoutChips(tokens: string[], padding: boolean[], width: number): { chips: Chip[]; lines: number } {
  const measure = document.createElement('canvas').getContext('2d')!;
  measure.font = FONT;
  const chips: Chip[] = [];
  for (let p = 0; p < tokens.length; p++) {
    if (!padding[p]) {
      chips.push({ first: p, count: 1, pad: false, label: visible(tokens[p]), token: tokens[p], x: 0, line: 0, width: 0 });
      continue;
    }
    let last = p;
    while (last + 1 < tokens.length && padding[last + 1]) last++;
    const count = last - p + 1;
    const name = tokens[p] === '' ? 'padding' : visible(tokens[p]);
    chips.push({ first: p, count, pad: true, label: count > 1 ? `${name} ×${count}` : name, token: tokens[p], x: 0, line: 0, width: 0 });
    p = last;
  }
  let x = 0;
  let line = 0;
  for (const chip of chips) {
    chip.width = Math.min(width, Math.ceil(measure.measureText(chip.label).width) + 2 * INSET);
    if (x > 0 && x + chip.width > width) {
      line++;
      x = 0;
    }
    chip.x = x;
    chip.line = line;
    x += chip.width + GAP;
  }
  return { chips, lines: chips.length ? line + 1 : 0 };
}

/** Dark or light text, whichever reads on `fill`. */
function textOn(fill: string): string {
  const c = rgb(fill);
  return 0.299 * c.r + 0.587 * c.g + 0.114 * c.b > 140 ? '#212121' : '#ffffff';
}

let patterns = 0;

/** A hatch pattern for padding cells in `svg`; returns its fill reference. */
function hatch(svg: SVGSVGElement): string {
  const id = `padding-hatch-${++patterns}`;
  const pattern = select(svg).append('defs').append('pattern').attr('id', id).attr('width', 5).attr('height', 5)
    .attr('patternUnits', 'userSpaceOnUse').attr('patternTransform', 'rotate(45)');
  pattern.append('line').attr('x1', 0).attr('y1', 0).attr('x2', 0).attr('y2', 5).attr('stroke', ink().border).attr('stroke-width', 1.5);
  return `url(#${id})`;
}

/** The probe explorer's panel for a text input: the text at one step, its colour key, the strip over steps. */
export class TextPanel {
  readonly element: HTMLElement;
  private readonly text = svgElement();
  private readonly legend = svgElement();
  private readonly strip = svgElement();
  private readonly tooltip: Tooltip;
  private probe: TextProbe | null = null;
  private index = 0; // the step (index into probe.steps) the text shows
  private valueName = '';

  constructor(private readonly onPick: (step: number) => void) {
    this.text.classList.add('token-text');
    this.strip.classList.add('token-strip');
    this.text.setAttribute('role', 'img');
    this.strip.setAttribute('role', 'img');
    this.element = el('div', { class: 'text-panel' }, this.text, this.legend, this.strip);
    this.element.style.position = 'relative';
    this.tooltip = new Tooltip(this.element);
    for (const svg of [this.text, this.strip]) {
      svg.addEventListener('mousemove', (event) => this.hover(event));
      svg.addEventListener('mouseleave', () => this.tooltip.hide());
    }
    this.strip.addEventListener('click', (event) => {
      const row = (event.target as Element).closest('[data-step]');
      if (row && this.probe) this.onPick(Number(row.getAttribute('data-step')));
    });
  }

  /** Draws `probe` at its step `index` to fit `width`. */
  show(probe: TextProbe, index: number, width: number): void {
    this.probe = probe;
    this.index = index;
    this.text.setAttribute('aria-label', `the probe's text, each token coloured by its attribution at step ${probe.steps[index] ?? ''}; hover for values`);
    this.strip.setAttribute('aria-label', 'the same text across steps, one row per step; click a row to open its step');
    this.valueName = probe.signed ? 'attribution' : '|attribution|';
    const scale = attributionScale(probe.range, probe.signed);
    const map = probe.attributions[index] ?? [];
    const textWidth = Math.max(120, width - 4);
    const { chips, lines } = layoutChips(probe.tokens, probe.padding, textWidth);
    this.drawText(chips, lines, map, scale, width);
    this.drawLegend(scale, probe, width);
    this.drawStrip(probe, layoutChips(probe.tokens, probe.padding, Math.max(120, width - GUTTER - 4)), index, scale, width);
  }

  private drawText(chips: Chip[], lines: number, map: Num[], scale: ColorScale, width: number): void {
    const svg = select(this.text).attr('width', width).attr('height', Math.max(1, lines * LINE));
    svg.selectAll('*').remove();
    for (const chip of chips) {
      const value = chip.pad ? null : map[chip.first] ?? null;
      const g = svg.append('g').attr('class', chip.pad ? 'pad' : 'token').attr('data-position', chip.first).attr('data-count', chip.count)
        .attr('data-token', chip.token).attr('transform', `translate(${chip.x},${chip.line * LINE})`);
      if (!chip.pad) g.attr('data-value', value === null ? 'null' : String(value));
      const fill = chip.pad ? 'none' : value === null || !Number.isFinite(value) ? rgbText(ink().missing) : scale(value);
      g.append('rect').attr('width', chip.width).attr('height', CHIP).attr('rx', 3).attr('fill', fill)
        .attr('stroke', ink().border).attr('stroke-width', chip.pad ? 1 : 0.5).attr('stroke-dasharray', chip.pad ? '3,2' : null);
      g.append('text').attr('x', INSET).attr('y', CHIP / 2).attr('dy', '0.35em').attr('font-size', FONT_PX)
        .attr('fill', chip.pad ? ink().muted : textOn(fill)).attr('font-style', chip.pad ? 'italic' : null).text(chip.label);
      if (chip.pad) g.attr('opacity', 0.7);
    }
  }

  private drawLegend(scale: ColorScale, probe: TextProbe, width: number): void {
    const svg = select(this.legend).attr('width', width);
    svg.selectAll('*').remove();
    const length = Math.max(100, Math.min(320, width - 200));
    drawColorLegend(svg, {
      scale, x: 4, y: 4, length, orientation: 'horizontal',
      title: probe.signed ? 'attribution (red: towards the explained class, blue: against)' : '|attribution|',
    });
    const padded = probe.padding.filter(Boolean).length;
    if (!padded) {
      svg.attr('height', 50);
      return;
    }
    // Beside the colour bar, or under it in a narrow panel.
    const beside = length + 24 + PADDING_KEY <= width;
    svg.attr('height', beside ? 50 : 72);
    const key = svg.append('g').attr('class', 'padding-key').attr('transform', beside ? `translate(${length + 24},2)` : 'translate(4,52)')
      .attr('opacity', 0.7);
    key.append('rect').attr('width', 34).attr('height', 14).attr('rx', 3).attr('fill', 'none').attr('stroke', ink().border).attr('stroke-dasharray', '3,2');
    key.append('text').attr('x', 42).attr('y', 7).attr('dy', '0.35em').attr('font-size', 11).attr('fill', ink().muted)
      .text(`padding: no attribution (${padded} of ${probe.padding.length} positions)`);
  }

  private drawStrip(probe: TextProbe, layout: { chips: Chip[]; lines: number }, index: number, scale: ColorScale, width: number): void {
    const svg = select(this.strip);
    svg.selectAll('*').remove();
    const { chips, lines } = layout;
    const steps = probe.steps;
    if (steps.length === 0 || lines === 0) {
      svg.attr('width', width).attr('height', 1);
      return;
    }
    const rowsFit = Math.floor((STRIP_HEIGHT / lines - HEADER - BAND_GAP) / ROW);
    const picked = new Set(evenlySpaced(steps.length, Math.max(3, Math.min(MAX_ROWS, rowsFit))));
    picked.add(index);
    const rows = [...picked].sort((a, b) => a - b);
    const padFill = hatch(this.strip);
    const labelEvery = Math.max(1, Math.ceil(rows.length / 12));
    const caption = 22;
    const band = HEADER + rows.length * ROW + BAND_GAP;
    svg.attr('width', width).attr('height', caption + lines * band);
    svg.append('text').attr('x', 0).attr('y', 14).attr('font-size', 12).attr('font-weight', 500).attr('fill', ink().strong)
      .text(`Across steps: one row per step${rows.length < steps.length ? ` (${rows.length} of ${steps.length}, evenly spaced)` : ''}; click a row to open its step`);
    for (let line = 0; line < lines; line++) {
      const top = caption + line * band;
      const onLine = chips.filter((c) => c.line === line);
      const lineWidth = Math.max(...onLine.map((c) => c.x + c.width));
      const header = svg.append('g').attr('class', 'strip-tokens');
      for (const chip of onLine) {
        const g = header.append('g').attr('class', chip.pad ? 'pad' : 'token').attr('data-position', chip.first).attr('data-count', chip.count)
          .attr('data-token', chip.token);
        g.append('rect').attr('x', GUTTER + chip.x).attr('y', top).attr('width', chip.width).attr('height', HEADER - 4).attr('fill', 'transparent');
        g.append('text').attr('x', GUTTER + chip.x + INSET).attr('y', top + (HEADER - 4) / 2).attr('dy', '0.35em').attr('font-size', FONT_PX)
          .attr('fill', chip.pad ? ink().muted : ink().text).attr('font-style', chip.pad ? 'italic' : null).attr('opacity', chip.pad ? 0.7 : null)
          .text(chip.label);
      }
      rows.forEach((s, r) => {
        const y = top + HEADER + r * ROW;
        const row = svg.append('g').attr('class', 'strip-row').attr('data-step', steps[s]).attr('data-step-index', s).style('cursor', 'pointer');
        const map = probe.attributions[s] ?? [];
        row.append('rect').attr('x', 0).attr('y', y).attr('width', GUTTER + lineWidth).attr('height', ROW).attr('fill', 'transparent');
        if (r % labelEvery === 0 || s === index) {
          row.append('text').attr('x', GUTTER - 6).attr('y', y + ROW / 2).attr('dy', '0.35em').attr('text-anchor', 'end').attr('font-size', 10)
            .attr('fill', s === index ? ink().strong : ink().muted).attr('font-weight', s === index ? 500 : null).text(`step ${steps[s]}`);
        }
        for (const chip of onLine) {
          const value = chip.pad ? null : map[chip.first] ?? null;
          row.append('rect').attr('class', chip.pad ? 'pad-cell' : 'cell').attr('data-position', chip.first).attr('data-count', chip.count)
            .attr('data-token', chip.token).attr('data-value', chip.pad || value === null ? null : String(value))
            .attr('x', GUTTER + chip.x).attr('y', y).attr('width', chip.width).attr('height', ROW - 1)
            .attr('fill', chip.pad ? padFill : value === null || !Number.isFinite(value) ? rgbText(ink().missing) : scale(value))
            .attr('opacity', chip.pad ? 0.7 : null);
        }
        if (s === index) {
          row.append('rect').attr('class', 'selected-step').attr('x', GUTTER - 1).attr('y', y - 1).attr('width', lineWidth + 2).attr('height', ROW + 1)
            .attr('fill', 'none').attr('stroke', ink().strong).attr('stroke-width', 1.5).attr('pointer-events', 'none');
        }
      });
    }
  }

  private hover(event: MouseEvent): void {
    const probe = this.probe;
    const target = (event.target as Element).closest('[data-position]');
    if (!probe || !target) {
      this.tooltip.hide();
      return;
    }
    const first = Number(target.getAttribute('data-position'));
    const count = Number(target.getAttribute('data-count'));
    const row = target.closest('[data-step-index]');
    const box = this.element.getBoundingClientRect();
    const x = event.clientX - box.left;
    const y = event.clientY - box.top;
    const lines = [`token: ${probe.tokens[first]}`];
    lines.push(`step: ${row ? row.getAttribute('data-step') : probe.steps[this.index]}`);
    if (probe.padding[first]) {
      lines.push(count > 1 ? `positions ${first}–${first + count - 1}: padding (${count} positions)` : `position ${first}: padding`, 'no attribution');
    } else {
      const s = row ? Number(row.getAttribute('data-step-index')) : this.index;
      const map = probe.attributions[s] ?? [];
      lines.push(`position: ${first}`, `${this.valueName}: ${formatValue(map[first])}`);
    }
    this.tooltip.show(lines, x, y);
  }
}

function rgbText(triple: readonly number[]): string {
  return `rgb(${triple[0]},${triple[1]},${triple[2]})`;
}

/**
 * A probe's first words for a menu: its non-padding tokens joined by spaces, cut near `max` characters.
 * Token strings are shown as logged (subword pieces included).
 */
export function firstWords(tokens: string[], padding: boolean[], max = 32): string {
  const words: string[] = [];
  let length = 0;
  for (let p = 0; p < tokens.length; p++) {
    if (padding[p] || tokens[p] === '') continue;
    if (length + tokens[p].length > max) {
      words.push(words.length ? '…' : `${tokens[p].slice(0, max)}…`);
      break;
    }
    words.push(tokens[p]);
    length += tokens[p].length + 1;
  }
  return words.join(' ').replace(/ …$/, '…');
}

/** The CSV of text probes: the prediction trajectory, then every token's value per step, padding marked. */
export function textTable(probes: TextProbe[]): Table {
  const primary = probes[0];
  const predictions = primary.prediction_steps.flatMap((step, i) =>
    primary.predictions[i].map((value, c) => ['prediction', step, primary.class_names[c] ?? String(c), null, null, value]),
  );
  const rows = probes.flatMap((probe) => {
    const names = elementNames(probe.layout);
    return probe.steps.flatMap((step, i) => probe.attributions[i].map((value, n) => [probe.method, step, names[n], probe.tokens[n], probe.padding[n], value]));
  });
  return { header: ['method', 'step', 'feature', 'token', 'padding', 'value'], rows: [...predictions, ...rows] };
}

/**
 * Run B's word ranking on run A's words, so compared runs line up word by word: B's values for the words both
 * hold, null (not logged) for A's words that never occur in B's probes.
 */
export function alignWords(a: Evolution, b: Evolution): Evolution {
  const words = a.layout.names ?? [];
  const at = new Map((b.layout.names ?? []).map((word, i) => [word, i]));
  const index = words.map((word) => at.get(word));
  return {
    ...b,
    layout: a.layout,
    map_shape: a.map_shape,
    importance: b.importance.map((row) => index.map((i) => (i === undefined ? null : row[i]))),
    counts: index.map((i) => (i === undefined ? 0 : b.counts?.[i] ?? 0)),
    order: a.order,
  };
}
