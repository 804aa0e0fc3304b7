// The one colour legend: a gradient bar sampled from a scale, with its axis and a title, drawn into an SVG
// group (vertical beside a heatmap, horizontal under a picture). Part of the chart's SVG, so exports carry it.

import { axisBottom, axisRight } from 'd3-axis';
import { scaleLinear } from 'd3-scale';
import { Selection } from 'd3-selection';
import { ColorScale } from '../colors';
import { SVG_NS } from '../dom';
import { ink } from '../theme';

export interface ColorLegend {
  scale: ColorScale;
  title: string;
  x: number;
  y: number;
  length: number; // along the bar
  orientation: 'vertical' | 'horizontal';
  /** The domain shown, when not the scale's own (e.g. [-1, 1]). */
  domain?: [number, number];
}

let ids = 0;

/** Draws the legend into `parent`; returns the extent it takes across the bar (for layout). */
export function drawColorLegend(parent: Selection<SVGSVGElement, unknown, null, undefined>, legend: ColorLegend): number {
  const domain = legend.domain ?? ((d) => [d[0], d[d.length - 1]] as [number, number])(legend.scale.domain());
  const g = parent.append('g').attr('class', 'color-legend').attr('data-title', legend.title);
  const id = `legend-${++ids}`;
  const vertical = legend.orientation === 'vertical';
  const gradient = g.append('defs').append('linearGradient').attr('id', id)
    .attr('x1', 0).attr('y1', vertical ? 1 : 0).attr('x2', vertical ? 0 : 1).attr('y2', 0);
  for (let i = 0; i <= 10; i++) {
    gradient.append('stop').attr('offset', `${i * 10}%`).attr('stop-color', legend.scale(domain[0] + ((domain[1] - domain[0]) * i) / 10));
  }
  const bar = 10;
  g.append('rect').attr('x', legend.x).attr('y', legend.y).attr('width', vertical ? bar : legend.length).attr('height', vertical ? legend.length : bar)
    .attr('fill', `url(#${id})`).attr('stroke', ink().border);
  const axisScale = scaleLinear().domain(domain);
  if (vertical) {
    axisScale.range([legend.y + legend.length, legend.y]);
    g.append('g').attr('transform', `translate(${legend.x + bar},0)`).call(axisRight(axisScale).ticks(4, '~g'));
    g.append('text').attr('transform', `translate(${legend.x + 56},${legend.y + legend.length / 2}) rotate(-90)`).attr('text-anchor', 'middle')
      .attr('font-size', 10).attr('fill', ink().muted).text(legend.title);
    return 66;
  }
  axisScale.range([legend.x, legend.x + legend.length]);
  g.append('g').attr('transform', `translate(0,${legend.y + bar})`).call(axisBottom(axisScale).ticks(Math.max(2, Math.floor(legend.length / 60)), '~g'));
  g.append('text').attr('x', legend.x + legend.length / 2).attr('y', legend.y + bar + 30).attr('text-anchor', 'middle')
    .attr('font-size', 10).attr('fill', ink().muted).text(legend.title);
  return bar + 34;
}

/** A one-line SVG title (part of the chart, so exports carry it), with an optional colour swatch before it. */
export function titleSvg(text: string, width: number, swatch?: string): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', '20');
  svg.classList.add('title');
  const label = document.createElementNS(SVG_NS, 'text');
  label.setAttribute('x', swatch ? '16' : '0');
  label.setAttribute('y', '14');
  label.setAttribute('font-size', '12');
  label.setAttribute('font-weight', '500');
  label.setAttribute('fill', ink().strong);
  label.textContent = text;
  if (swatch) {
    const rect = document.createElementNS(SVG_NS, 'rect');
    for (const [k, v] of Object.entries({ x: 0, y: 4, width: 11, height: 11, rx: 2, fill: swatch })) rect.setAttribute(k, String(v));
    svg.append(rect);
  }
  svg.append(label);
  return svg;
}
