// Typed access to the plugin's routes (docs/http_api.md). The iframe's <base href> is the plugin's route
// prefix, so relative URLs reach /data/plugin/tb_xai/<route>.

export type Num = number | null;

export interface InputInfo {
  input: string;
  modality: string;
  feature_names: string[];
  attribution_shape: number[];
  map_shape: number[];
  steps: number[];
  dropped_steps: number[];
  config: Record<string, unknown>;
  /** Changes whenever the tag is written (older servers leave it out). */
  version?: string;
}

export interface MethodInfo {
  method: string;
  inputs: InputInfo[];
  failures: { step: number; message: string }[];
}

export interface RunInfo {
  run: string;
  /** Changes whenever any tb_xai tag of the run is written (older servers leave it out). */
  version?: string;
  probe_count: number | null;
  has_labels: boolean;
  class_names: string[];
  /** The explained head's number of classes (older servers leave it out). */
  class_count?: number;
  output_name: string;
  prediction_steps: number[];
  scalar_runs: string[];
  /** Per sibling scalar run, a token that changes whenever it is written. */
  scalar_versions?: Record<string, string>;
  methods: MethodInfo[];
}

export interface Evolution {
  modality: string;
  signed: boolean;
  steps: number[];
  map_shape: number[];
  /** Element names of a 1-D map; `null` for image maps (see elementNames). */
  features: string[] | null;
  importance: Num[][];
  probe_counts: number[];
  order: number[] | null;
  range: [number, number] | null;
}

export interface Probe {
  method: string;
  probe: number;
  modality: string;
  signed: boolean;
  steps: number[];
  map_shape: number[];
  /** Element names of a 1-D map; `null` for image maps (see elementNames). */
  features: string[] | null;
  attributions: Num[][];
  range: [number, number] | null;
  prediction_steps: number[];
  predictions: Num[][];
  targets: (number | null)[];
  class_names: string[];
  label: number | number[] | null;
  input_shape: number[] | null;
  input_values: Num[] | null;
  input_range: [number, number] | null;
}

export interface Stability {
  k: number;
  steps: number[];
  spearman_previous: Num[];
  topk_previous: Num[];
  spearman_last: Num[];
  topk_last: Num[];
}

export interface AgreementPair {
  methods: [string, string];
  steps: number[];
  spearman: Num[];
  topk: Num[];
}

export interface Agreement {
  input: string;
  k: number;
  methods: string[];
  pairs: AgreementPair[];
}

export interface ScalarSeries {
  steps: number[];
  values: Num[];
}

export interface Scalars {
  runs: Record<string, Record<string, ScalarSeries>>;
}

type Params = Record<string, string | number | boolean | undefined>;

/**
 * Answers by URL, each with the data version it was fetched at: an answer is reused only while its run's
 * version is unchanged, so steps written since (a run still training) are fetched on the next reload. At most
 * CACHE_ENTRIES answers are kept, the least recently used dropped first.
 */
const cache = new Map<string, { version: string; answer: Promise<unknown> }>();
export const CACHE_ENTRIES = 32;

/** How many answers the cache holds now (for tests). */
export function cacheSize(): number {
  return cache.size;
}

/**
 * What a run holds, as a string that changes whenever a step is written: the server's version token of the run
 * (every tag's last step and wall time, so a refit rewriting the same steps counts too). Servers without it:
 * per tag, how many steps and the last.
 */
export function dataVersion(run: RunInfo): string {
  if (run.version !== undefined) return run.version;
  const tail = (steps: number[]) => `${steps.length}:${steps[steps.length - 1] ?? ''}`;
  const parts = [tail(run.prediction_steps)];
  for (const method of run.methods) {
    parts.push(`${method.method}=${method.failures.length}`, ...method.inputs.map((i) => tail(i.steps)));
  }
  return parts.join(',');
}

/** The version of the Keras scalars next to `run`: changes whenever any of its sibling scalar runs is written. */
export function scalarsVersion(run: RunInfo): string {
  const versions = run.scalar_versions;
  if (!versions) return `${dataVersion(run)}|${run.scalar_runs.join(',')}`;
  return run.scalar_runs.map((name) => `${name}=${versions[name] ?? ''}`).join(',');
}

function routeUrl(route: string, params: Params): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    query.set(key, typeof value === 'boolean' ? (value ? '1' : '0') : String(value));
  }
  const qs = query.toString();
  return `./${route}${qs ? `?${qs}` : ''}`;
}

/** GETs a route's JSON; with a `version`, reuses the answer fetched at that version. */
async function getJson<T>(route: string, params: Params, version?: string): Promise<T> {
  const url = routeUrl(route, params);
  const hit = version === undefined ? undefined : cache.get(url);
  if (hit && hit.version === version) {
    cache.delete(url); // most recently used last
    cache.set(url, hit);
    return hit.answer as Promise<T>;
  }
  const pending = fetch(url).then(async (response) => {
    if (!response.ok) throw new Error(`${route}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  });
  if (version !== undefined) {
    const entry = { version, answer: pending };
    cache.delete(url); // replaces the answer of an older version: one entry per URL
    cache.set(url, entry);
    while (cache.size > CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
    pending.catch(() => cache.get(url) === entry && cache.delete(url));
  }
  return pending;
}

/** The runs holding tb_xai data. Never cached: a reload picks up runs and steps written since. */
export async function fetchRuns(): Promise<RunInfo[]> {
  return (await getJson<{ runs: RunInfo[] }>('runs', {})).runs;
}

export interface Query {
  run: string;
  method: string;
  input: string;
  target: string;
  signed: boolean;
  /** The run's `dataVersion` when the query was made. */
  version: string;
}

export function fetchEvolution(q: Query): Promise<Evolution> {
  return getJson('evolution', { run: q.run, method: q.method, input: q.input, target: q.target, signed: q.signed }, q.version);
}

export function fetchProbe(q: Query, probe: number): Promise<Probe> {
  return getJson('probe', { run: q.run, method: q.method, input: q.input, probe, signed: q.signed }, q.version);
}

export function fetchStability(q: Query, k: number): Promise<Stability> {
  return getJson('stability', { run: q.run, method: q.method, input: q.input, target: q.target, k }, q.version);
}

export function fetchAgreement(q: Query, k: number): Promise<Agreement> {
  return getJson('agreement', { run: q.run, input: q.input, target: q.target, k }, q.version);
}

/** The Keras scalars next to `run`, at `version` (`scalarsVersion`). */
export function fetchScalars(run: string, version: string): Promise<Scalars> {
  return getJson('scalars', { run }, version);
}
