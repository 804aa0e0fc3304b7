// Colour scales for attributions, all from d3-scale / d3-scale-chromatic. White always means "no
// attribution": magnitudes use a sequential yellow-orange-red ramp from white, signed values a diverging
// blue-white-red one (red = pushes towards the explained class).

import { rgb } from 'd3-color';
import { quantileSorted } from 'd3-array';
import { scaleDiverging, scaleSequential } from 'd3-scale';
import { interpolateBrBG, interpolateRdBu, interpolateYlOrRd, schemeTableau10 } from 'd3-scale-chromatic';

export type ColorScale = ((value: number) => string) & { domain(): number[] };

const fromWhite = (t: number) => interpolateYlOrRd(t * 0.95);
const blueWhiteRed = (t: number) => interpolateRdBu(1 - t);

/** The scale for attribution values spanning `range`; symmetric around zero when `signed`. */
export function attributionScale(range: [number, number] | null, signed: boolean): ColorScale {
  const lo = range ? range[0] : 0;
  const hi = range ? range[1] : 1;
  if (signed) {
    const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    return scaleDiverging(blueWhiteRed).domain([-m, 0, m]).clamp(true) as unknown as ColorScale;
  }
  return scaleSequential(fromWhite).domain([0, hi > 0 ? hi : 1]).clamp(true) as unknown as ColorScale;
}

/**
 * The scale for rank correlations in [-1, 1]: brown (disagree) through white (unrelated) to teal (agree), so it
 * is never mistaken for the blue-red of signed attributions.
 */
export function correlationScale(): ColorScale {
  return scaleDiverging(interpolateBrBG).domain([-1, 0, 1]).clamp(true) as unknown as ColorScale;
}

/** Lookup table of `size` RGB triples over the scale's domain, for painting pixels fast. */
export function lookupTable(scale: ColorScale, size = 256): Uint8ClampedArray {
  const domain = scale.domain();
  const lo = domain[0];
  const hi = domain[domain.length - 1];
  const table = new Uint8ClampedArray(size * 3);
  for (let i = 0; i < size; i++) {
    const c = rgb(scale(lo + ((hi - lo) * i) / (size - 1)));
    table.set([c.r, c.g, c.b], i * 3);
  }
  return table;
}

/** Index into a lookup table built by `lookupTable` for `value` under `scale`. */
export function tableIndex(scale: ColorScale, value: number, size = 256): number {
  const domain = scale.domain();
  const lo = domain[0];
  const hi = domain[domain.length - 1];
  const t = (value - lo) / (hi - lo || 1);
  return Math.max(0, Math.min(size - 1, Math.round(t * (size - 1))));
}

/** The p-th percentile (0..1) of |values|, ignoring nulls. */
export function absPercentile(values: ArrayLike<number | null>, p: number): number {
  const sorted: number[] = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v !== null && Number.isFinite(v)) sorted.push(Math.abs(v));
  }
  sorted.sort((a, b) => a - b);
  return quantileSorted(sorted, p) ?? 0;
}

/** Categorical colours for lines (features, classes, metrics). */
export const lineColors: readonly string[] = schemeTableau10;

/** Dash patterns that, with `lineColors`, tell apart more lines than there are colours ('' is solid). */
export const lineDashes: readonly string[] = ['', '6,3', '2,2', '8,3,2,3'];

/** Cells without a value (no probe of the selected target at that step). */
export const MISSING_RGB: readonly number[] = [0xe0, 0xe0, 0xe0];
