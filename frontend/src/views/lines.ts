// A line chart over steps (SVG, d3-shape), with an optional second y axis, a legend, a step marker and a
// hover read-out of every series at the nearest step.

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
  dashed?: boolean;
  axis?: 'left' | 'right';
}

export interface LinesData {
  series: Series[];
  yLabel: string;
  yDomain?: [number, number];
  rightLabel?: string;
  marker?: number | null; // a step to mark with a vertical rule
  annotations?: { step: number; text: string }[];
}

const SVG_NS = 'http://www.w3.org/2000/svg';
const LEGEND_ROW = 16;

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
    const legendColumns = Math.max(1, Math.floor(plotWidth / 200));
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

    const plot = svg.append('g').attr('class', 'series');
    for (const s of data.series) {
      const scale = s.axis === 'right' ? yRight : y;
      const points = s.steps.map((step, i) => [step, s.values[i]] as [number, number | null]);
      const path = line<[number, number | null]>()
        .defined((p) => p[1] !== null && Number.isFinite(p[1]))
        .x((p) => x(p[0]))
        .y((p) => scale(p[1] as number));
      plot.append('path').attr('d', path(points) ?? '').attr('fill', 'none').attr('stroke', s.color).attr('stroke-width', s.dashed ? 1.5 : 2)
        .attr('stroke-dasharray', s.dashed ? '5,3' : null).append('title').text(s.name);
      if (s.steps.length === 1) {
        plot.append('circle').attr('cx', x(s.steps[0])).attr('cy', scale(s.values[0] ?? 0)).attr('r', 3).attr('fill', s.color);
      }
    }

    const legend = svg.append('g').attr('class', 'legend').attr('font-size', 11);
    const columnWidth = plotWidth / legendColumns;
    data.series.forEach((s, i) => {
      const g = legend.append('g').attr('transform', `translate(${left + (i % legendColumns) * columnWidth},${legendTop + Math.floor(i / legendColumns) * LEGEND_ROW})`);
      g.append('line').attr('x1', 0).attr('x2', 18).attr('y1', 6).attr('y2', 6).attr('stroke', s.color).attr('stroke-width', 2)
        .attr('stroke-dasharray', s.dashed ? '5,3' : null);
      g.append('text').attr('x', 24).attr('y', 6).attr('dy', '0.35em').attr('fill', '#424242').text(shorten(s.name, Math.floor((columnWidth - 24) / 6)))
        .append('title').text(s.name);
    });

    // Hover: read every series at the nearest logged step.
    const rule = svg.append('line').attr('y1', top).attr('y2', top + this.plotHeight).attr('stroke', '#bdbdbd').attr('visibility', 'hidden');
    const nearest = bisector<number, number>((d) => d).center;
    svg.append('rect').attr('x', left).attr('y', top).attr('width', plotWidth).attr('height', this.plotHeight).attr('fill', 'transparent')
      .on('mousemove', (event: MouseEvent) => {
        const [px, py] = pointer(event, this.svg);
        const step = x.invert(px);
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
        this.tooltip.hide();
      });
  }
}
