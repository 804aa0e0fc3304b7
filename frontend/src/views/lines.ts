// A line chart over steps (SVG, d3-shape), with an optional second y axis, a legend, a step marker and a
// hover read-out of every series at the nearest step (or, for charts of many lines, of the nearest line).

import { bisector, extent } from 'd3-array';
import { axisBottom, axisLeft, axisRight } from 'd3-axis';
import { scaleLinear } from 'd3-scale';
import { pointer, select } from 'd3-selection';
import { line } from 'd3-shape';
import { formatValue, shorten } from '../dom';
import { Tooltip } from './tooltip';

export interface Series {
  name: string;
  color: string;
  steps: number[];
  values: (number | null)[];
  dashed?: boolean | string; // true: the default dash, a string: an SVG dash array ('' is solid)
  axis?: 'left' | 'right';
}

export interface LinesData {
  series: Series[];
  yLabel: string;
  yDomain?: [number, number];
  rightLabel?: string;
  marker?: number | null; // a step to mark with a vertical rule
  annotations?: { step: number; text: string }[];
  references?: { value: number; text: string }[]; // horizontal rules on the left axis
  hover?: 'all' | 'nearest'; // read every series at the hovered step (default), or only the line nearest the pointer
  valueName?: string; // what a value is called in the 'nearest' read-out (default: yLabel)
  onPick?: (step: number) => void; // a click picks the nearest logged step
}

const SVG_NS = 'http://www.w3.org/2000/svg';
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

export class Lines {
  readonly element: HTMLElement;
  private readonly svg: SVGSVGElement;
  private readonly tooltip: Tooltip;
  private paths = new Map<string, SVGPathElement>();

  constructor(private readonly plotHeight = 180) {
    this.svg = document.createElementNS(SVG_NS, 'svg');
    this.element = document.createElement('div');
    this.element.className = 'lines';
    this.element.append(this.svg);
    this.tooltip = new Tooltip(this.element);
  }

  draw(data: LinesData, width: number): void {
    const left = 48;
    const right = data.series.some((s) => s.axis === 'right') ? 52 : 14;
    const top = 14;
    const plotWidth = Math.max(60, width - left - right);
    // Legend columns at least 200 px, wider when that lets every name show in full.
    const measure = document.createElement('canvas').getContext('2d')!;
    measure.font = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
    const nameWidths = data.series.map((s) => measure.measureText(s.name).width);
    const widest = Math.max(0, ...nameWidths) + 32;
    const legendWidth = width - left - 8;
    const legendColumns = Math.max(1, Math.floor(legendWidth / (widest <= legendWidth / 2 ? Math.max(200, widest) : 200)));
    const legendRows = Math.ceil(data.series.length / legendColumns);
    const legendTop = top + this.plotHeight + 34;
    const height = legendTop + legendRows * LEGEND_ROW + 4;

    const leftSeries = data.series.filter((s) => s.axis !== 'right');
    const rightSeries = data.series.filter((s) => s.axis === 'right');
    const allSteps = data.series.flatMap((s) => s.steps);
    const [s0, s1] = extent(allSteps);
    const x = scaleLinear().domain([s0 ?? 0, s1 === s0 ? (s0 ?? 0) + 1 : (s1 ?? 1)]).range([left, left + plotWidth]);
    const y = scaleLinear().domain(data.yDomain ?? finiteExtent(leftSeries)).nice().range([top + this.plotHeight, top]);
    const yRight = scaleLinear().domain(finiteExtent(rightSeries)).nice().range([top + this.plotHeight, top]);

    const svg = select(this.svg).attr('width', width).attr('height', height);
    svg.selectAll('*').remove();
    this.element.style.height = `${height}px`;
    // Steps are integers: never label a tick between two of them.
    const stepTicks = x.ticks(Math.max(2, Math.floor(plotWidth / 70))).filter(Number.isInteger);
    svg.append('g').attr('transform', `translate(0,${top + this.plotHeight})`)
      .call(axisBottom(x).tickValues(stepTicks).tickFormat((d) => String(d)).tickSizeOuter(0));
    svg.append('g').attr('transform', `translate(${left},0)`).call(axisLeft(y).ticks(5, '~g'));
    svg.append('g').attr('class', 'grid').attr('transform', `translate(${left},0)`)
      .call(axisLeft(y).ticks(5).tickSize(-plotWidth).tickFormat(() => ''))
      .call((g) => g.select('.domain').remove())
      .call((g) => g.selectAll('line').attr('stroke', '#eeeeee'));
    const label = (text: string, transform: string) =>
      svg.append('text').attr('transform', transform).attr('text-anchor', 'middle').attr('font-size', 11).attr('fill', '#616161').text(text);
    label(data.yLabel, `translate(12,${top + this.plotHeight / 2}) rotate(-90)`);
    label('step', `translate(${left + plotWidth / 2},${top + this.plotHeight + 30})`);
    if (rightSeries.length) {
      svg.append('g').attr('transform', `translate(${left + plotWidth},0)`).call(axisRight(yRight).ticks(5, '~g'));
      label(data.rightLabel ?? '', `translate(${width - 8},${top + this.plotHeight / 2}) rotate(-90)`);
    }

    for (const [i, a] of (data.annotations ?? []).entries()) {
      svg.append('line').attr('x1', x(a.step)).attr('x2', x(a.step)).attr('y1', top).attr('y2', top + this.plotHeight)
        .attr('stroke', '#9e9e9e').attr('stroke-dasharray', '2,3');
      svg.append('text').attr('x', x(a.step) + 4).attr('y', top + this.plotHeight - 4 - 12 * i).attr('font-size', 10).attr('fill', '#616161').text(a.text);
    }
    if (data.marker !== undefined && data.marker !== null) {
      svg.append('line').attr('class', 'marker').attr('x1', x(data.marker)).attr('x2', x(data.marker)).attr('y1', top)
        .attr('y2', top + this.plotHeight).attr('stroke', '#212121').attr('stroke-width', 1);
    }

    for (const r of data.references ?? []) {
      svg.append('line').attr('class', 'reference').attr('x1', left).attr('x2', left + plotWidth).attr('y1', y(r.value)).attr('y2', y(r.value))
        .attr('stroke', '#9e9e9e').attr('stroke-dasharray', '4,3');
    }

    this.paths = new Map();
    const plot = svg.append('g').attr('class', 'series');
    for (const s of data.series) {
      const scale = s.axis === 'right' ? yRight : y;
      const points = s.steps.map((step, i) => [step, s.values[i]] as [number, number | null]);
      const path = line<[number, number | null]>()
        .defined((p) => p[1] !== null && Number.isFinite(p[1]))
        .x((p) => x(p[0]))
        .y((p) => scale(p[1] as number));
      plot.append('path').attr('d', path(points) ?? '').attr('fill', 'none').attr('stroke', s.color).attr('stroke-width', s.dashed ? 1.5 : 2)
        .attr('stroke-dasharray', dashArray(s.dashed)).attr('data-series', s.name)
        .call((p) => this.paths.set(s.name, p.node()!))
        .append('title').text(s.name);
      // A finite point between gaps (a one-step run, a lone value among nulls) has no segment: a dot shows it.
      const finite = (i: number) => { const v = s.values[i]; return v !== null && v !== undefined && Number.isFinite(v); };
      s.steps.forEach((step, i) => {
        if (finite(i) && !finite(i - 1) && !finite(i + 1)) {
          plot.append('circle').attr('cx', x(step)).attr('cy', scale(s.values[i] as number)).attr('r', 3).attr('fill', s.color);
        }
      });
    }

    for (const r of data.references ?? []) { // labelled above the lines, with a halo
      svg.append('text').attr('x', left + 4).attr('y', y(r.value) - 4).attr('font-size', 10).attr('fill', '#616161')
        .attr('stroke', '#ffffff').attr('stroke-width', 3).attr('paint-order', 'stroke').text(r.text);
    }

    const legend = svg.append('g').attr('class', 'legend').attr('font-size', 11);
    const columnWidth = legendWidth / legendColumns;
    data.series.forEach((s, i) => {
      const g = legend.append('g').attr('transform', `translate(${left + (i % legendColumns) * columnWidth},${legendTop + Math.floor(i / legendColumns) * LEGEND_ROW})`);
      g.append('line').attr('x1', 0).attr('x2', 18).attr('y1', 6).attr('y2', 6).attr('stroke', s.color).attr('stroke-width', 2)
        .attr('stroke-dasharray', dashArray(s.dashed));
      g.on('mouseenter', () => this.highlight(s.name)).on('mouseleave', () => this.highlight(null));
      g.append('text').attr('x', 24).attr('y', 6).attr('dy', '0.35em').attr('fill', '#424242').text(nameWidths[i] + 28 <= columnWidth ? s.name : shorten(s.name, Math.floor((columnWidth - 24) / 6)))
        .append('title').text(s.name);
    });

    // Hover: read every series at the nearest logged step, or the line nearest the pointer.
    const rule = svg.append('line').attr('y1', top).attr('y2', top + this.plotHeight).attr('stroke', '#bdbdbd').attr('visibility', 'hidden');
    const dot = svg.append('circle').attr('r', 3.5).attr('fill', '#fff').attr('stroke-width', 2).attr('visibility', 'hidden').attr('pointer-events', 'none');
    const nearest = bisector<number, number>((d) => d).center;
    const area = svg.append('rect').attr('x', left).attr('y', top).attr('width', plotWidth).attr('height', this.plotHeight).attr('fill', 'transparent')
      .on('mousemove', (event: MouseEvent) => {
        const [px, py] = pointer(event, this.svg);
        const step = x.invert(px);
        if (data.hover === 'nearest') {
          let best: { s: Series; i: number; distance: number } | null = null;
          for (const s of leftSeries) {
            if (!s.steps.length) continue;
            const i = nearest(s.steps, step);
            const v = s.values[i];
            if (v === null || !Number.isFinite(v)) continue;
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
      const steps = [...new Set(allSteps)].sort((a, b) => a - b);
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
