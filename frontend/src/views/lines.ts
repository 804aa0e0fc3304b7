// A line chart over steps (SVG, d3-shape), with an optional second y axis, a legend, a step marker and a
// hover read-out of every series at the nearest step (or, for charts of many lines, of the nearest line).

import { bisector, extent } from 'd3-array';
import { axisBottom, axisLeft, axisRight } from 'd3-axis';
import { ScaleLinear, scaleLinear } from 'd3-scale';
import { Selection, pointer, select } from 'd3-selection';
import { area, line } from 'd3-shape';
import { formatValue, shorten, svgElement } from '../dom';
import { ink } from '../theme';
import { Tooltip } from './tooltip';

export interface Series {
  name: string;
  color: string;
  steps: number[];
  values: (number | null)[];
  dashed?: boolean | string; // true: the default dash, a string: an SVG dash array ('' is solid)
  axis?: 'left' | 'right';
}

/** A shaded range over steps (e.g. a noise floor): from `lo` to `hi` on the left axis, gaps where either is null. */
export interface Band {
  name: string;
  color: string;
  steps: number[];
  lo: (number | null)[];
  hi: (number | null)[];
}

export interface LinesData {
  series: Series[];
  bands?: Band[]; // drawn under the lines, listed after them in the legend
  yLabel: string;
  yDomain?: [number, number];
  rightLabel?: string;
  marker?: number | null; // a step to mark with a vertical rule
  annotations?: { step: number; text: string }[];
  references?: { value: number; text: string }[]; // horizontal rules on the left axis, labelled in the right margin
  hover?: 'all' | 'nearest'; // read every series at the hovered step (default), or only the line nearest the pointer
  valueName?: string; // what a value is called in the 'nearest' read-out (default: yLabel)
  onPick?: (step: number) => void; // a click picks the nearest logged step
}

type Svg = Selection<SVGSVGElement, unknown, null, undefined>;

interface Layout {
  left: number;
  top: number;
  plotWidth: number;
  plotHeight: number;
  width: number;
  height: number;
  legendTop: number;
  legendColumns: number;
  nameWidths: number[];
  x: ScaleLinear<number, number>;
  y: ScaleLinear<number, number>;
  yRight: ScaleLinear<number, number>;
}

const LEGEND_ROW = 16;

function dashArray(dashed: Series['dashed']): string | null {
  if (dashed === true) return '5,3';
  return dashed ? dashed : null;
}

function finiteExtent(series: Series[]): [number, number] {
  const values = series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const [lo, hi] = extent(values);
  if (lo === undefined || hi === undefined) return [0, 1];
  return lo === hi ? [lo - 1, hi + 1] : [lo, hi];
}

const finite = (v: number | null | undefined): v is number => v !== null && v !== undefined && Number.isFinite(v);

/** What the legend lists: the series, then the bands. */
function legendEntries(data: LinesData): { name: string; color: string; dashed?: Series['dashed']; band?: boolean }[] {
  return [...data.series, ...(data.bands ?? []).map((b) => ({ name: b.name, color: b.color, band: true }))];
}

export class Lines {
  readonly element: HTMLElement;
  private readonly svg: SVGSVGElement;
  private readonly tooltip: Tooltip;
  private paths = new Map<string, SVGPathElement>();

  constructor(private readonly plotHeight = 180) {
    this.svg = svgElement();
    this.element = document.createElement('div');
    this.element.className = 'lines';
    this.element.append(this.svg);
    this.tooltip = new Tooltip(this.element);
  }

  draw(data: LinesData, width: number): void {
    const layout = this.layout(data, width);
    const svg = select(this.svg).attr('width', width).attr('height', layout.height);
    svg.selectAll('*').remove();
    this.element.style.height = `${layout.height}px`;
    this.drawAxes(svg, data, layout);
    this.drawRules(svg, data, layout);
    this.drawSeries(svg, data, layout);
    this.drawReferenceLabels(svg, data, layout);
    this.drawLegend(svg, data, layout);
    this.listen(svg, data, layout);
  }

  /** Sizes and scales: the plot, the legend's columns (at least 200 px, wider when names then show in full). */
  private layout(data: LinesData, width: number): Layout {
    const left = 48;
    const references = (data.references ?? []).length > 0;
    const right = data.series.some((s) => s.axis === 'right') ? 52 : references ? 64 : 14;
    const top = 14;
    const plotWidth = Math.max(60, width - left - right);
    const measure = document.createElement('canvas').getContext('2d')!;
    measure.font = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
    const nameWidths = legendEntries(data).map((e) => measure.measureText(e.name).width);
    const widest = Math.max(0, ...nameWidths) + 32;
    const legendWidth = width - left - 8;
    const legendColumns = Math.max(1, Math.floor(legendWidth / (widest <= legendWidth / 2 ? Math.max(200, widest) : 200)));
    const legendRows = Math.ceil(legendEntries(data).length / legendColumns);
    const legendTop = top + this.plotHeight + 34;
    const height = legendTop + legendRows * LEGEND_ROW + 4;
    const leftSeries = data.series.filter((s) => s.axis !== 'right');
    const rightSeries = data.series.filter((s) => s.axis === 'right');
    const [s0, s1] = extent(data.series.flatMap((s) => s.steps));
    const x = scaleLinear().domain([s0 ?? 0, s1 === s0 ? (s0 ?? 0) + 1 : (s1 ?? 1)]).range([left, left + plotWidth]);
    const y = scaleLinear().domain(data.yDomain ?? finiteExtent(leftSeries)).nice().range([top + this.plotHeight, top]);
    const yRight = scaleLinear().domain(finiteExtent(rightSeries)).nice().range([top + this.plotHeight, top]);
    return { left, top, plotWidth, plotHeight: this.plotHeight, width, height, legendTop, legendColumns, nameWidths, x, y, yRight };
  }

  private drawAxes(svg: Svg, data: LinesData, l: Layout): void {
    // Steps are integers: never label a tick between two of them.
    const stepTicks = l.x.ticks(Math.max(2, Math.floor(l.plotWidth / 70))).filter(Number.isInteger);
    svg.append('g').attr('transform', `translate(0,${l.top + l.plotHeight})`)
      .call(axisBottom(l.x).tickValues(stepTicks).tickFormat((d) => String(d)).tickSizeOuter(0));
    svg.append('g').attr('transform', `translate(${l.left},0)`).call(axisLeft(l.y).ticks(5, '~g'));
    svg.append('g').attr('class', 'grid').attr('transform', `translate(${l.left},0)`)
      .call(axisLeft(l.y).ticks(5).tickSize(-l.plotWidth).tickFormat(() => ''))
      .call((g) => g.select('.domain').remove())
      .call((g) => g.selectAll('line').attr('stroke', ink().grid));
    const label = (text: string, transform: string) =>
      svg.append('text').attr('transform', transform).attr('text-anchor', 'middle').attr('font-size', 11).attr('fill', ink().muted).text(text);
    label(data.yLabel, `translate(12,${l.top + l.plotHeight / 2}) rotate(-90)`);
    label('step', `translate(${l.left + l.plotWidth / 2},${l.top + l.plotHeight + 30})`);
    if (data.series.some((s) => s.axis === 'right')) {
      svg.append('g').attr('transform', `translate(${l.left + l.plotWidth},0)`).call(axisRight(l.yRight).ticks(5, '~g'));
      label(data.rightLabel ?? '', `translate(${l.width - 8},${l.top + l.plotHeight / 2}) rotate(-90)`);
    }
  }

  /** Annotations, the step marker and the reference rules, under the lines. */
  private drawRules(svg: Svg, data: LinesData, l: Layout): void {
    const bottom = l.top + l.plotHeight;
    for (const [i, a] of (data.annotations ?? []).entries()) {
      svg.append('line').attr('x1', l.x(a.step)).attr('x2', l.x(a.step)).attr('y1', l.top).attr('y2', bottom)
        .attr('stroke', ink().rule).attr('stroke-dasharray', '2,3');
      svg.append('text').attr('x', l.x(a.step) + 4).attr('y', bottom - 4 - 12 * i).attr('font-size', 10).attr('fill', ink().muted).text(a.text);
    }
    if (data.marker !== undefined && data.marker !== null) {
      svg.append('line').attr('class', 'marker').attr('x1', l.x(data.marker)).attr('x2', l.x(data.marker)).attr('y1', l.top)
        .attr('y2', bottom).attr('stroke', ink().strong).attr('stroke-width', 1);
    }
    for (const b of data.bands ?? []) {
      const points = b.steps.map((step, i) => [step, b.lo[i], b.hi[i]] as [number, number | null, number | null]);
      const shape = area<[number, number | null, number | null]>()
        .defined((p) => finite(p[1]) && finite(p[2]))
        .x((p) => l.x(p[0]))
        .y0((p) => l.y(p[1] as number))
        .y1((p) => l.y(p[2] as number));
      svg.append('path').attr('class', 'band').attr('data-band', b.name).attr('d', shape(points) ?? '')
        .attr('fill', b.color).attr('fill-opacity', 0.16).attr('stroke', 'none')
        .append('title').text(b.name);
    }
    for (const r of data.references ?? []) {
      svg.append('line').attr('class', 'reference').attr('x1', l.left).attr('x2', l.left + l.plotWidth).attr('y1', l.y(r.value)).attr('y2', l.y(r.value))
        .attr('stroke', ink().rule).attr('stroke-dasharray', '4,3');
    }
  }

  private drawSeries(svg: Svg, data: LinesData, l: Layout): void {
    this.paths = new Map();
    const plot = svg.append('g').attr('class', 'series');
    for (const s of data.series) {
      const scale = s.axis === 'right' ? l.yRight : l.y;
      const points = s.steps.map((step, i) => [step, s.values[i]] as [number, number | null]);
      const path = line<[number, number | null]>()
        .defined((p) => finite(p[1]))
        .x((p) => l.x(p[0]))
        .y((p) => scale(p[1] as number));
      plot.append('path').attr('d', path(points) ?? '').attr('fill', 'none').attr('stroke', s.color).attr('stroke-width', s.dashed ? 1.5 : 2)
        .attr('stroke-dasharray', dashArray(s.dashed)).attr('data-series', s.name)
        .call((p) => this.paths.set(s.name, p.node()!))
        .append('title').text(s.name);
      // A finite point between gaps (a one-step run, a lone value among nulls) has no segment: a dot shows it.
      s.steps.forEach((step, i) => {
        if (finite(s.values[i]) && !finite(s.values[i - 1]) && !finite(s.values[i + 1])) {
          plot.append('circle').attr('cx', l.x(step)).attr('cy', scale(s.values[i] as number)).attr('r', 3).attr('fill', s.color);
        }
      });
    }
  }

  /** Reference labels sit in the right margin, beside their rule: never under or over a line. */
  private drawReferenceLabels(svg: Svg, data: LinesData, l: Layout): void {
    for (const r of data.references ?? []) {
      svg.append('text').attr('class', 'reference-label').attr('x', l.left + l.plotWidth + 4).attr('y', l.y(r.value)).attr('dy', '0.35em')
        .attr('font-size', 10).attr('fill', ink().muted).text(r.text);
    }
  }

  private drawLegend(svg: Svg, data: LinesData, l: Layout): void {
    const legend = svg.append('g').attr('class', 'legend').attr('font-size', 11);
    const columnWidth = (l.width - l.left - 8) / l.legendColumns;
    legendEntries(data).forEach((s, i) => {
      const g = legend.append('g')
        .attr('transform', `translate(${l.left + (i % l.legendColumns) * columnWidth},${l.legendTop + Math.floor(i / l.legendColumns) * LEGEND_ROW})`);
      if (s.band) {
        g.append('rect').attr('x', 0).attr('y', 1).attr('width', 18).attr('height', 10).attr('fill', s.color).attr('fill-opacity', 0.25);
      } else {
        g.append('line').attr('x1', 0).attr('x2', 18).attr('y1', 6).attr('y2', 6).attr('stroke', s.color).attr('stroke-width', 2)
          .attr('stroke-dasharray', dashArray(s.dashed));
        g.on('mouseenter', () => this.highlight(s.name)).on('mouseleave', () => this.highlight(null));
      }
      g.append('text').attr('x', 24).attr('y', 6).attr('dy', '0.35em').attr('fill', ink().text)
        .text(l.nameWidths[i] + 28 <= columnWidth ? s.name : shorten(s.name, Math.floor((columnWidth - 24) / 6)))
        .append('title').text(s.name);
    });
  }

  /** Hover: read every series at the nearest logged step, or the line nearest the pointer; click picks a step. */
  private listen(svg: Svg, data: LinesData, l: Layout): void {
    const { x, y, top, left, plotWidth, plotHeight } = l;
    const rule = svg.append('line').attr('y1', top).attr('y2', top + plotHeight).attr('stroke', ink().border).attr('visibility', 'hidden');
    const dot = svg.append('circle').attr('r', 3.5).attr('fill', ink().card).attr('stroke-width', 2).attr('visibility', 'hidden').attr('pointer-events', 'none');
    const nearest = bisector<number, number>((d) => d).center;
    const leftSeries = data.series.filter((s) => s.axis !== 'right');
    const area = svg.append('rect').attr('x', left).attr('y', top).attr('width', plotWidth).attr('height', plotHeight).attr('fill', 'transparent')
      .on('mousemove', (event: MouseEvent) => {
        const [px, py] = pointer(event, this.svg);
        const step = x.invert(px);
        if (data.hover === 'nearest') {
          let best: { s: Series; i: number; distance: number } | null = null;
          for (const s of leftSeries) {
            if (!s.steps.length) continue;
            const i = nearest(s.steps, step);
            const v = s.values[i];
            if (!finite(v)) continue;
            const distance = Math.hypot(x(s.steps[i]) - px, y(v) - py);
            if (!best || distance < best.distance) best = { s, i, distance };
          }
          if (!best) return;
          const { s, i } = best;
          const v = s.values[i] as number;
          rule.attr('x1', x(s.steps[i])).attr('x2', x(s.steps[i])).attr('visibility', 'visible');
          dot.attr('cx', x(s.steps[i])).attr('cy', y(v)).attr('stroke', s.color).attr('visibility', 'visible');
          this.highlight(s.name);
          this.tooltip.show([`step: ${s.steps[i]}`, s.name, `${data.valueName ?? data.yLabel}: ${formatValue(v)}`], px, py);
          return;
        }
        const lines = [`step: ${Math.round(step)}`];
        for (const s of data.series) {
          if (!s.steps.length) continue;
          const i = nearest(s.steps, step);
          lines.push(`${s.name}: ${formatValue(s.values[i])} (step ${s.steps[i]})`);
        }
        rule.attr('x1', px).attr('x2', px).attr('visibility', 'visible');
        this.tooltip.show(lines, px, py);
      })
      .on('mouseleave', () => {
        rule.attr('visibility', 'hidden');
        dot.attr('visibility', 'hidden');
        if (data.hover === 'nearest') this.highlight(null);
        this.tooltip.hide();
      });
    if (data.onPick) {
      const onPick = data.onPick;
      const steps = [...new Set(data.series.flatMap((s) => s.steps))].sort((a, b) => a - b);
      area.style('cursor', 'pointer').on('click', (event: MouseEvent) => {
        if (steps.length) onPick(steps[nearest(steps, x.invert(pointer(event, this.svg)[0]))]);
      });
    }
  }

  /** Brings out the series called `name` and fades the others; null shows every series alike. */
  highlight(name: string | null): void {
    for (const [series, path] of this.paths) {
      path.style.opacity = name === null || series === name ? '' : '0.18';
      path.style.strokeWidth = name !== null && series === name ? '3' : '';
    }
  }
}

/** The y domain of correlations and overlaps: from the data (padded), never wider than [-1, 1], always with `keep` in it. */
export function correlationDomain(values: (number | null)[], keep: number[] = []): [number, number] {
  const known = [...values.filter(finite), ...keep];
  if (!known.length) return [-1, 1];
  const lo = Math.min(...known);
  const hi = Math.max(...known);
  const pad = Math.max(0.02, (hi - lo) * 0.1);
  return [Math.max(-1, lo - pad), Math.min(1, hi + pad)];
}
