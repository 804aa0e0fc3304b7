// An image probe with its attribution map laid over it.
//
// Readability over fidelity of the raw pixels: the input is shown light (grayscale as ink on white, colour
// images washed towards white), and the attribution is alpha-blended on top with opacity growing with
// |attribution| up to the 99th percentile of this map (values beyond are clipped). So a frame is never
// near-black, and the strongest regions stay visible however small the raw values are.

import { rgb } from 'd3-color';
import { absPercentile, attributionScale } from '../colors';

export const CLIP_PERCENTILE = 0.99;
const MAX_ALPHA = 0.85;

export interface OverlayInput {
  shape: number[]; // [H, W] or [H, W, C]
  values: (number | null)[];
  range: [number, number];
}

/** Light RGB background pixels [H*W*3] for an input image. */
function basePixels(input: OverlayInput | null, height: number, width: number): Float32Array {
  const out = new Float32Array(height * width * 3).fill(255);
  if (!input || input.shape.length < 2) return out;
  const [h, w] = input.shape;
  const channels = input.shape.length > 2 ? input.shape[2] : 1;
  const [lo, hi] = input.range;
  const span = hi - lo || 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const sy = Math.floor((y * h) / height);
      const sx = Math.floor((x * w) / width);
      const at = (sy * w + sx) * channels;
      const o = (y * width + x) * 3;
      if (channels >= 3) {
        for (let c = 0; c < 3; c++) out[o + c] = 0.55 * 255 * (((input.values[at + c] ?? lo) - lo) / span) + 0.45 * 255;
      } else {
        let sum = 0;
        for (let c = 0; c < channels; c++) sum += input.values[at + c] ?? lo;
        const t = (sum / channels - lo) / span;
        out.fill(255 - 150 * t, o, o + 3);
      }
    }
  }
  return out;
}

/** Paints the probe with its map blended on top into `canvas` at `size` CSS pixels on the longer side. */
export function paintOverlay(
  canvas: HTMLCanvasElement,
  input: OverlayInput | null,
  map: (number | null)[],
  mapShape: number[],
  signed: boolean,
  size: number,
): number {
  const height = mapShape[0];
  const width = mapShape.slice(1).reduce((a, b) => a * b, 1);
  const clip = absPercentile(map, CLIP_PERCENTILE) || 1;
  const scale = attributionScale(signed ? [-clip, clip] : [0, clip], signed);
  const base = basePixels(input, height, width);
  const pixels = new ImageData(width, height);
  for (let i = 0; i < height * width; i++) {
    const v = map[i];
    const alpha = v === null || !Number.isFinite(v) ? 0 : Math.min(1, Math.abs(v) / clip) * MAX_ALPHA;
    const c = rgb(scale(signed ? (v ?? 0) : Math.abs(v ?? 0)));
    pixels.data[i * 4] = base[i * 3] * (1 - alpha) + c.r * alpha;
    pixels.data[i * 4 + 1] = base[i * 3 + 1] * (1 - alpha) + c.g * alpha;
    pixels.data[i * 4 + 2] = base[i * 3 + 2] * (1 - alpha) + c.b * alpha;
    pixels.data[i * 4 + 3] = 255;
  }
  const small = document.createElement('canvas');
  small.width = width;
  small.height = height;
  small.getContext('2d')!.putImageData(pixels, 0, 0);
  const zoom = size / Math.max(height, width);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * zoom * dpr);
  canvas.height = Math.round(height * zoom * dpr);
  canvas.style.width = `${Math.round(width * zoom)}px`;
  canvas.style.height = `${Math.round(height * zoom)}px`;
  const ctx = canvas.getContext('2d')!;
  ctx.imageSmoothingEnabled = zoom < 1;
  ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  return clip;
}
