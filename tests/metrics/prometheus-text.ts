/**
 * A strict reader of Prometheus' text exposition format (version 0.0.4), as a scraper
 * would apply it: throws on any line that is not a HELP/TYPE line, a comment, a blank
 * line or a well-formed sample, and on the structural rules Prometheus enforces (one TYPE
 * per family, before its samples; a family's samples together; histogram buckets
 * cumulative with an `le` label and a `+Inf` bucket equal to `_count`).
 */

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: MetricType;
  help: string | undefined;
  samples: Sample[];
}

const metricName = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const labelName = "[a-zA-Z_][a-zA-Z0-9_]*";
const labelValue = '"(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
// Prometheus reads values with Go's strconv.ParseFloat, which takes NaN and Inf in any
// case (prom-client writes `Nan`).
const number = "(?:[+-]?(?:\\d+\\.?\\d*(?:[eE][+-]?\\d+)?|\\.\\d+(?:[eE][+-]?\\d+)?)|[+-]?(?:[iI][nN][fF](?:[iI][nN][iI][tT][yY])?)|[nN][aA][nN])";
const sampleLine = new RegExp(
  `^(${metricName})(?:\\{((?:${labelName}=${labelValue})(?:,${labelName}=${labelValue})*,?)?\\})? (${number})(?: (-?\\d+))?$`,
);
const labelPair = new RegExp(`(${labelName})=(${labelValue})`, "g");
const helpLine = new RegExp(`^# HELP (${metricName})(?: (.*))?$`);
const typeLine = new RegExp(`^# TYPE (${metricName}) (counter|gauge|histogram|summary|untyped)$`);

export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("exposition must end with a newline");
  const families = new Map<string, MetricFamily>();
  const typed = new Set<string>();
  let current: MetricFamily | undefined;
  const lines = text.split("\n");
  lines.pop(); // after the final newline

  lines.forEach((line, index) => {
    const where = `line ${index + 1}: ${JSON.stringify(line)}`;
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const help = helpLine.exec(line);
      const type = typeLine.exec(line);
      if (help) {
        const family = familyFor(help[1]!, where);
        if (family.help !== undefined) throw new Error(`second HELP for ${family.name} at ${where}`);
        family.help = unescapeHelp(help[2] ?? "");
      } else if (type) {
        const family = familyFor(type[1]!, where);
        if (typed.has(family.name)) throw new Error(`second TYPE for ${family.name} at ${where}`);
        family.type = type[2] as MetricType;
        typed.add(family.name);
      } else if (/^# (HELP|TYPE)\b/.test(line)) {
        throw new Error(`malformed ${line.slice(2, 6)} at ${where}`);
      }
      return;
    }
    const m = sampleLine.exec(line);
    if (!m) throw new Error(`not a sample at ${where}`);
    const name = m[1]!;
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? "").matchAll(labelPair)) {
      if (pair[1]! in labels) throw new Error(`label ${pair[1]} twice at ${where}`);
      labels[pair[1]!] = unescapeLabel(pair[2]!.slice(1, -1));
    }
    const family = familyOfSample(name);
    if (!family) throw new Error(`sample ${name} has no TYPE before it, at ${where}`);
    if (current !== family && family.samples.length > 0) throw new Error(`samples of ${family.name} are not together, at ${where}`);
    current = family;
    family.samples.push({ name, labels, value: parseValue(m[3]!) });
  });

  for (const family of families.values()) {
    if (family.help === undefined || !typed.has(family.name)) throw new Error(`${family.name} lacks HELP or TYPE`);
    if (family.type === "histogram") checkHistogram(family);
  }
  return families;

  function familyFor(name: string, where: string): MetricFamily {
    let family = families.get(name);
    if (!family) families.set(name, (family = { name, type: "untyped", help: undefined, samples: [] }));
    if (family.samples.length > 0) throw new Error(`HELP or TYPE for ${name} after its samples, at ${where}`);
    return family;
  }

  function familyOfSample(name: string): MetricFamily | undefined {
    const exact = families.get(name);
    if (exact && typed.has(name)) return exact;
    for (const suffix of ["_bucket", "_sum", "_count"]) {
      if (!name.endsWith(suffix)) continue;
      const base = families.get(name.slice(0, -suffix.length));
      if (base && (base.type === "histogram" || (base.type === "summary" && suffix !== "_bucket"))) return base;
    }
    return undefined;
  }
}

function checkHistogram(family: MetricFamily): void {
  const series = new Map<string, { buckets: { le: number; value: number }[]; count?: number; sum?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (sample.name === `${family.name}_bucket`) {
      if (le === undefined) throw new Error(`${sample.name} without le`);
      entry.buckets.push({ le: parseValue(le), value: sample.value });
    } else if (sample.name === `${family.name}_count`) entry.count = sample.value;
    else if (sample.name === `${family.name}_sum`) entry.sum = sample.value;
    else throw new Error(`${sample.name} is not a histogram sample of ${family.name}`);
  }
  for (const [key, entry] of series) {
    const where = `${family.name}${key}`;
    if (entry.count === undefined || entry.sum === undefined) throw new Error(`${where} lacks _count or _sum`);
    const last = entry.buckets.at(-1);
    if (!last || last.le !== Infinity) throw new Error(`${where} has no +Inf bucket`);
    if (last.value !== entry.count) throw new Error(`${where}: +Inf bucket ${last.value} != count ${entry.count}`);
    entry.buckets.forEach((bucket, i) => {
      const before = entry.buckets[i - 1];
      if (before && (bucket.le <= before.le || bucket.value < before.value)) throw new Error(`${where}: buckets not cumulative`);
    });
  }
}

function parseValue(text: string): number {
  const word = text.toLowerCase().replace(/^\+/, "");
  if (word === "inf" || word === "infinity") return Infinity;
  if (word === "-inf" || word === "-infinity") return -Infinity;
  if (word === "nan") return NaN;
  return Number(text);
}

function unescapeLabel(text: string): string {
  return text.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
}

function unescapeHelp(text: string): string {
  return text.replace(/\\([\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
}

/** The value of the one sample named `name` whose labels include `labels`; throws if not exactly one. */
export function sampleValue(families: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}): number {
  const matches = [...families.values()]
    .flatMap((f) => f.samples)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (matches.length !== 1) {
    throw new Error(`${matches.length} samples of ${name}${JSON.stringify(labels)}`);
  }
  return matches[0]!.value;
}

/** Every sample named `name` (any labels). */
export function samplesOf(families: Map<string, MetricFamily>, name: string): Sample[] {
  return [...families.values()].flatMap((f) => f.samples).filter((s) => s.name === name);
}
