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
}

export interface MethodInfo {
  method: string;
  inputs: InputInfo[];
  failures: { step: number; message: string }[];
}

export interface RunInfo {
  run: string;
  probe_count: number | null;
  has_labels: boolean;
  class_names: string[];
  output_name: string;
  prediction_steps: number[];
  scalar_runs: string[];
  methods: MethodInfo[];
}

export interface Evolution {
  modality: string;
  signed: boolean;
  steps: number[];
  map_shape: number[];
  features: string[];
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
  features: string[];
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
  wall_times: number[];
  values: number[];
}

export interface Scalars {
  runs: Record<string, Record<string, ScalarSeries>>;
}

type Params = Record<string, string | number | boolean | undefined>;

/**
 * Answers by URL, each with the data version it was fetched at: an answer is reused only while its run's
 * version is unchanged, so steps written since (a run still training) are fetched on the next reload.
 */
const cache = new Map<string, { version: string; answer: Promise<unknown> }>();

/**
 * What a run holds, as a string that changes whenever a step is written: per tag, how many steps and the last.
 * A run still training gets a new version at every epoch the callback logs.
 */
export function dataVersion(run: RunInfo): string {
  const tail = (steps: number[]) => `${steps.length}:${steps[steps.length - 1] ?? ''}`;
  const parts = [tail(run.prediction_steps)];
  for (const method of run.methods) {
    parts.push(`${method.method}=${method.failures.length}`, ...method.inputs.map((i) => tail(i.steps)));
  }
  return parts.join(',');
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
  if (hit && hit.version === version) return hit.answer as Promise<T>;
  const pending = fetch(url).then(async (response) => {
    if (!response.ok) throw new Error(`${route}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  });
  if (version !== undefined) {
    const entry = { version, answer: pending };
    cache.set(url, entry); // replaces the answer of an older version: one entry per URL
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

/** The Keras scalars next to `run`; they grow with the run, so they share its version. */
export function fetchScalars(run: string, version: string): Promise<Scalars> {
  return getJson('scalars', { run }, version);
}
