/**
 * A small Prometheus registry: counters, gauges and histograms with labels, written in
 * the text exposition format (version 0.0.4) for `GET /metrics`.
 *
 * @module
 */

/** Label names and values of one series. */
export type Labels = Record<string, string>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function labelText(l: Labels | undefined, extra?: [string, string]): string {
  const parts = Object.entries(l ?? {}).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  if (extra) parts.push(`${extra[0]}="${escapeLabel(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function num(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return Number.isNaN(v) ? "NaN" : String(v);
}

function key(l: Labels | undefined): string {
  return JSON.stringify(Object.entries(l ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** What {@linkcode MetricsRegistry} renders: one metric family. */
export interface Metric {
  /** The metric name (letters, digits, `_` and `:`). */
  name: string;
  /** The `# HELP` text. */
  help: string;
  /** The `# TYPE`. */
  type: "counter" | "gauge" | "histogram";
  /** Its sample lines of the exposition format. */
  render(): string[];
}

/** A monotonically increasing count per label set. */
export class Counter implements Metric {
  /** The `# TYPE`. */
  readonly type = "counter";
  #series = new Map<string, { labels: Labels | undefined; value: number }>();

  /** Use {@linkcode MetricsRegistry.counter}. */
  constructor(readonly name: string, readonly help: string) {}

  /** Adds `by` (≥ 0, default 1) to the series of `labels`. */
  inc(labels?: Labels, by = 1): void {
    if (!(by >= 0)) throw new RangeError(`${this.name}: a counter only goes up, got ${by}`);
    const k = key(labels);
    const s = this.#series.get(k);
    if (s) s.value += by;
    else this.#series.set(k, { labels, value: by });
  }

  /** The current value of a series (0 when never incremented). */
  get(labels?: Labels): number {
    return this.#series.get(key(labels))?.value ?? 0;
  }

  /** Lines of the exposition format. */
  render(): string[] {
    return [...this.#series.values()].map((s) =>
      `${this.name}${labelText(s.labels)} ${num(s.value)}`
    );
  }
}

/** A value read when scraped (a callback) or set. */
export class Gauge implements Metric {
  /** The `# TYPE`. */
  readonly type = "gauge";
  #value = 0;
  #read: (() => number) | undefined;

  /** Use {@linkcode MetricsRegistry.gauge}. */
  constructor(readonly name: string, readonly help: string, read?: () => number) {
    this.#read = read;
  }

  /** Sets the value (gauges without a callback). */
  set(v: number): void {
    this.#value = v;
  }

  /** The current value. */
  get(): number {
    return this.#read ? this.#read() : this.#value;
  }

  /** Lines of the exposition format. */
  render(): string[] {
    return [`${this.name} ${num(this.get())}`];
  }
}

/** Cumulative buckets, sum and count per label set. */
export class Histogram implements Metric {
  /** The `# TYPE`. */
  readonly type = "histogram";
  /** Bucket upper bounds, strictly ascending (+Inf is implicit). */
  readonly buckets: readonly number[];
  #series = new Map<
    string,
    { labels: Labels | undefined; counts: number[]; sum: number; n: number }
  >();

  /** Use {@linkcode MetricsRegistry.histogram}. `buckets` are upper bounds, ascending. */
  constructor(readonly name: string, readonly help: string, buckets: readonly number[]) {
    if (!buckets.length || buckets.some((b, i) => i > 0 && b <= buckets[i - 1])) {
      throw new RangeError(`${name}: buckets must be non-empty and strictly ascending`);
    }
    this.buckets = buckets;
  }

  /** Records one observation. */
  observe(v: number, labels?: Labels): void {
    const k = key(labels);
    let s = this.#series.get(k);
    if (!s) {
      s = { labels, counts: new Array(this.buckets.length).fill(0), sum: 0, n: 0 };
      this.#series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) s.counts[i]++;
    s.sum += v;
    s.n++;
  }

  /** Observations of a series. */
  count(labels?: Labels): number {
    return this.#series.get(key(labels))?.n ?? 0;
  }

  /** Lines of the exposition format. */
  render(): string[] {
    const out: string[] = [];
    for (const s of this.#series.values()) {
      this.buckets.forEach((b, i) => {
        out.push(`${this.name}_bucket${labelText(s.labels, ["le", num(b)])} ${s.counts[i]}`);
      });
      out.push(`${this.name}_bucket${labelText(s.labels, ["le", "+Inf"])} ${s.n}`);
      out.push(`${this.name}_sum${labelText(s.labels)} ${num(s.sum)}`);
      out.push(`${this.name}_count${labelText(s.labels)} ${s.n}`);
    }
    return out;
  }
}

/** Metrics by name, rendered together. */
export class MetricsRegistry {
  #metrics = new Map<string, Metric>();

  #add<M extends Metric>(m: M): M {
    if (!NAME.test(m.name)) throw new RangeError(`Invalid metric name "${m.name}"`);
    if (this.#metrics.has(m.name)) throw new Error(`Metric "${m.name}" is already registered`);
    this.#metrics.set(m.name, m);
    return m;
  }

  /** Registers a counter. */
  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help));
  }

  /** Registers a gauge, read from `read` when scraped if given. */
  gauge(name: string, help: string, read?: () => number): Gauge {
    return this.#add(new Gauge(name, help, read));
  }

  /** Registers a histogram with the given bucket upper bounds. */
  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.#add(new Histogram(name, help, buckets));
  }

  /** The exposition text (Content-Type: text/plain; version=0.0.4). */
  render(): string {
    const lines: string[] = [];
    for (const m of this.#metrics.values()) {
      lines.push(`# HELP ${m.name} ${m.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
      lines.push(`# TYPE ${m.name} ${m.type}`);
      lines.push(...m.render());
    }
    return lines.join("\n") + "\n";
  }
}

/** Latency buckets in seconds, 5 ms … 5 min. */
export const SECONDS_BUCKETS: readonly number[] = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  120,
  300,
];

/** The server's metrics. */
export interface ServerMetrics {
  /** The registry they live in. */
  registry: MetricsRegistry;
  /** webdit_http_requests_total{route, method, status}. */
  requests: Counter;
  /** webdit_http_request_duration_seconds{route}. */
  requestSeconds: Histogram;
  /** webdit_queue_wait_seconds: from admission to the start of the GPU work. */
  queueWait: Histogram;
  /** webdit_step_seconds: one sampler step of a batch. */
  stepSeconds: Histogram;
  /** webdit_batch_images: images per GPU batch. */
  batchImages: Histogram;
  /** webdit_images_generated_total. */
  images: Counter;
  /** webdit_requests_rejected_total{reason}: queue_full, timeout, cancelled, shutdown. */
  rejected: Counter;
}

/** Creates the server's metrics; the gauges read the queue and the GPU pool when scraped. */
export function createServerMetrics(read: {
  queueDepth: () => number;
  running: () => number;
  gpuBytes: () => number;
  gpuPeakBytes: () => number;
}): ServerMetrics {
  const registry = new MetricsRegistry();
  const m: ServerMetrics = {
    registry,
    requests: registry.counter(
      "webdit_http_requests_total",
      "HTTP requests by route, method and status.",
    ),
    requestSeconds: registry.histogram(
      "webdit_http_request_duration_seconds",
      "Time to the response headers, by route.",
      SECONDS_BUCKETS,
    ),
    queueWait: registry.histogram(
      "webdit_queue_wait_seconds",
      "Time a generation request waited in the GPU queue.",
      SECONDS_BUCKETS,
    ),
    stepSeconds: registry.histogram(
      "webdit_step_seconds",
      "Latency of one sampler step (one GPU batch).",
      SECONDS_BUCKETS,
    ),
    batchImages: registry.histogram(
      "webdit_batch_images",
      "Images per GPU batch (micro-batching).",
      [1, 2, 4, 8, 16, 32, 64],
    ),
    images: registry.counter("webdit_images_generated_total", "Images generated and returned."),
    rejected: registry.counter(
      "webdit_requests_rejected_total",
      "Generation requests not completed, by reason (queue_full, timeout, cancelled, shutdown).",
    ),
  };
  registry.gauge(
    "webdit_queue_depth",
    "Generation requests waiting in the GPU queue.",
    read.queueDepth,
  );
  registry.gauge(
    "webdit_queue_running",
    "Generation requests in the running GPU batch.",
    read.running,
  );
  registry.gauge(
    "webdit_gpu_memory_bytes",
    "GPU buffer bytes in use (runtime pool).",
    read.gpuBytes,
  );
  registry.gauge(
    "webdit_gpu_memory_peak_bytes",
    "Peak GPU buffer bytes in use (runtime pool).",
    read.gpuPeakBytes,
  );
  return m;
}
