// Colour scales and the one painter of values into pixels. Magnitudes get a sequential ramp that starts at
// the page's background (white in light mode, near-black in dark mode), signed values a diverging blue-red one
// (red = pushes towards the explained class); runs compared side by side get one categorical colour each.

import { rgb } from 'd3-color';
import { quantileSorted } from 'd3-array';
import { scaleDiverging, scaleSequential } from 'd3-scale';
import { interpolateBrBG, interpolateInferno, interpolateRdBu, interpolateYlOrRd, schemeTableau10 } from 'd3-scale-chromatic';
import { ink } from './theme';

export type ColorScale = ((value: number) => string) & { domain(): number[] };

const fromWhite = (t: number) => interpolateYlOrRd(t * 0.95);
const fromBlack = (t: number) => interpolateInferno(0.08 + t * 0.9);
const blueWhiteRed = (t: number) => interpolateRdBu(1 - t);

/** The scale for attribution values spanning `range`; symmetric around zero when `signed`. */
export function attributionScale(range: [number, number] | null, signed: boolean): ColorScale {
  const lo = range ? range[0] : 0;
  const hi = range ? range[1] : 1;
  if (signed) {
    const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    return scaleDiverging(blueWhiteRed).domain([-m, 0, m]).clamp(true) as unknown as ColorScale;
  }
  return scaleSequential(ink().dark ? fromBlack : fromWhite).domain([0, hi > 0 ? hi : 1]).clamp(true) as unknown as ColorScale;
}

/** The scale of a difference (run B minus run A): diverging and symmetric around zero over `range`. */
export function differenceScale(range: [number, number] | null): ColorScale {
  return attributionScale(range, true);
}

/**
 * The scale for rank correlations in [-1, 1]: brown (disagree) through white (unrelated) to teal (agree), so it
 * is never mistaken for the blue-red of signed attributions.
 */
export function correlationScale(): ColorScale {
  return scaleDiverging(interpolateBrBG).domain([-1, 0, 1]).clamp(true) as unknown as ColorScale;
}

const LUT_SIZE = 256;

/** Lookup table of LUT_SIZE RGB triples over the scale's domain, for painting pixels fast. */
function lookupTable(scale: ColorScale): Uint8ClampedArray {
  const domain = scale.domain();
  const lo = domain[0];
  const hi = domain[domain.length - 1];
  const table = new Uint8ClampedArray(LUT_SIZE * 3);
  for (let i = 0; i < LUT_SIZE; i++) {
    const c = rgb(scale(lo + ((hi - lo) * i) / (LUT_SIZE - 1)));
    table.set([c.r, c.g, c.b], i * 3);
  }
  return table;
}

/**
 * Paints `height` x `width` values (`value(row, col)`) through `scale` into a canvas of that many pixels, one
 * per value (to be drawn scaled up); a missing or non-finite value gets the theme's "missing" grey.
 */
export function paintValues(height: number, width: number, value: (row: number, col: number) => number | null | undefined, scale: ColorScale): HTMLCanvasElement {
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, width);
  canvas.height = Math.max(1, height);
  const ctx = canvas.getContext('2d')!;
  const image = ctx.createImageData(canvas.width, canvas.height);
  const table = lookupTable(scale);
  const domain = scale.domain();
  const lo = domain[0];
  const span = domain[domain.length - 1] - lo || 1;
  const missing = ink().missing;
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) {
      const v = value(r, c);
      const at = (r * width + c) * 4;
      if (v === null || v === undefined || !Number.isFinite(v)) {
        image.data.set(missing, at);
      } else {
        const i = Math.max(0, Math.min(LUT_SIZE - 1, Math.round(((v - lo) / span) * (LUT_SIZE - 1)))) * 3;
        image.data[at] = table[i];
        image.data[at + 1] = table[i + 1];
        image.data[at + 2] = table[i + 2];
      }
      image.data[at + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
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
export const lineDashes: readonly string[] = ['', '6,3', '2,2', '8,3,2,3', '12,4', '1,3', '6,2,1,2,1,2'];

/** Colours of compared runs: the baseline blue, then orange, red, teal...; yellow (faint on white) last. */
const RUN_COLORS: readonly string[] = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac', '#edc948'];

/** One colour per compared run, by its place in the comparison (the baseline first): the same in every card. */
export function runColor(compared: readonly string[], run: string): string {
  const i = compared.indexOf(run);
  return RUN_COLORS[(i < 0 ? 0 : i) % RUN_COLORS.length];
}
