// One probe's attribution per feature at one step, as horizontal bars on a fixed axis (so moving the step
// slider shows bars grow and shrink rather than the axis rescaling). The bars carry no labels: they are
// drawn beside a heatmap of the same rows, lined up with its row labels.

import { axisTop } from 'd3-axis';
import { scaleLinear } from 'd3-scale';
import { select } from 'd3-selection';
import { attributionScale } from '../colors';
import { formatValue, svgElement } from '../dom';
import { ink } from '../theme';
export const BARS_TOP = 24;

export class Bars {
  readonly element: SVGSVGElement = svgElement();

  draw(names: string[], values: (number | null)[], range: [number, number] | null, signed: boolean, width: number, row: number): void {
    const left = 8;
    const top = BARS_TOP;
    const height = top + names.length * row + 4;
    const m = Math.max(Math.abs(range?.[0] ?? 0), Math.abs(range?.[1] ?? 0)) || 1;
    const x = scaleLinear().domain(signed ? [-m, m] : [0, m]).range([left, width - 16]);
    const color = attributionScale(signed ? [-m, m] : [0, m], signed);
    const positive = color(0.75 * m);
    const negative = color(-0.75 * m);
    const svg = select(this.element).attr('width', width).attr('height', height).attr('class', 'bars');
    svg.selectAll('*').remove();
    svg.append('g').attr('transform', `translate(0,${top})`).call(axisTop(x).ticks(Math.max(2, Math.floor((width - left) / 70)), '~g'));
    const rows = svg.append('g');
    names.forEach((name, i) => {
      const v = values[i];
      const y = top + i * row;
      if (v === null || !Number.isFinite(v) || v === 0) return;
      const x0 = x(0);
      const x1 = x(signed ? v : Math.abs(v));
      rows.append('rect').attr('x', Math.min(x0, x1)).attr('y', y + 1).attr('width', Math.max(1, Math.abs(x1 - x0))).attr('height', Math.max(2, row - 2))
        .attr('fill', signed && v < 0 ? negative : positive).attr('stroke', ink().rule).attr('stroke-width', 0.5)
        .append('title').text(`${name}: ${formatValue(v)}`);
    });
    if (signed) svg.append('line').attr('x1', x(0)).attr('x2', x(0)).attr('y1', top).attr('y2', height - 4).attr('stroke', ink().muted);
  }
}
