/**
 * The bench protocol (docs/design/evaluation.md section 5), as data: prompts, seeds, sampler
 * settings and the operating points of every method.
 *
 * Prompts. `full` = 32 prompts built deterministically from the dataset vocabulary (vocab.json):
 * prompt k aims at attributes that cycle independently through every value (shape k mod 3,
 * colour k mod 8, size, motion and background with offsets that decorrelate them), then takes the
 * closest unused combination from the training split, except every 4th prompt (k mod 4 = 1),
 * which takes the closest held-out combination (splitCombos: combinations the trainer never saw).
 * So the list covers every value of every attribute and is 1/4 held-out; each prompt records
 * `heldout`. `quick` = the first 2 prompts of that list (one training, one held-out combination).
 * A model folder without vocab.json (test models) gets captions built from the words its
 * tokenizer knows (attributes of the dataset vocabulary it can spell; `heldout` null where the
 * combination is incomplete), and any list can be replaced by explicit prompts.
 *
 * Operating points. Every strategy registered in cache/registry.ts at run time is benched: for a
 * name in OPERATING_POINTS, at each option set listed there ({} = the strategy's defaults; it is
 * added when missing), else at its defaults only. Methods registered later (mixcache, mixcache+
 * and its ablations) add their points by extending the map before the bench runs:
 *
 *   import { OPERATING_POINTS } from "../bench/protocol.ts";
 *   OPERATING_POINTS["mixcache"] = [{}, { target: 2 }, { target: 3 }];
 *
 * Points are validated by the strategy's own knob parser when the protocol is built.
 *
 * Identity. `hash` fingerprints what makes two runs comparable: model (config, weight files' size
 * and mtime, tokenizer), steps, guidance, shift, sampler, latent shape, negative prompt, and the
 * row schema. A row is keyed by protocol hash + point (tag and a hash of its full parsed config
 * and of the calibration profiles it may read) + seed + prompt text; prompt list, seeds and
 * methods can change between runs without invalidating finished rows.
 *
 * Oracle points (`oracle` option, oracle.ts): one per schedule of an oracle file, method `oracle`,
 * point name `oracle-<set>@<target>x`, run as MixCache following the schedule, and only in the
 * groups (prompt, seed) the schedule was planned on (`groupPoints`). The oracle file is not part
 * of the protocol hash; its points are keyed like any other (name + config hash, the schedule in
 * the config), so a changed schedule reruns and the other rows stay valid.
 */
import { canonicalJson, sha256 } from "../util/hash.ts";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, MixCacheError, UsageError } from "../errors.ts";
import { STRATEGIES, findStrategy, makeCache, strategyNames } from "../cache/registry.ts";
import { parseKnobs } from "../cache/knobs.ts";
import type { Granularity, CacheStrategy } from "../pipeline/hooks.ts";
import { DEFAULT_VOCAB_PATH, caption, loadVocab, parseCaption, splitCombos, type Attrs, type Vocab } from "../data/shapes.ts";
import type { LoadedModel } from "../models/load.ts";
import type { LatentShape } from "../models/types.ts";
import type { SamplerName } from "../schedulers/types.ts";
import { ORACLE_METHOD, checkOracleModel, checkOraclePrompts, oracleCovers, oracleNote, oraclePoints, type OracleFile, type OracleInfo, type OracleTag } from "./oracle.ts";

/** Version of the row format; part of the protocol hash. */
export const ROW_SCHEMA = 1;

export type PresetName = "quick" | "full";

export interface Preset {
  name: PresetName;
  summary: string;
  prompts: number;
  seeds: number[];
}

export const PRESETS: Record<PresetName, Preset> = {
  quick: { name: "quick", summary: "2 prompts (one training, one held-out combination) x 1 seed: CI and smoke runs", prompts: 2, seeds: [0] },
  full: { name: "full", summary: "32 prompts covering every attribute value (8 held-out combinations) x 2 seeds", prompts: 32, seeds: [0, 1] },
};

export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

/**
 * Option sets per method ({} = defaults). Thresholds and intervals bracket each method's published
 * default with a less and a more aggressive point. Extend it for new methods (see the file comment).
 */
export const OPERATING_POINTS: Record<string, Record<string, unknown>[]> = {
  none: [{}],
  "fewer-steps": [{ speedup: 1.5 }, {}, { speedup: 3 }, { speedup: 4 }],
  teacache: [{ threshold: 0.05 }, {}, { threshold: 0.15 }],
  magcache: [{ threshold: 0.06 }, {}, { threshold: 0.24, max_skip: 4 }],
  easycache: [{}, { thresh: 0.1 }, { thresh: 0.2 }],
  fbcache: [{ threshold: 0.02 }, {}, { threshold: 0.1 }],
  dbcache: [{ threshold: 0.04 }, {}, { threshold: 0.16 }],
  "delta-dit": [{}, { interval: 3 }, { interval: 4 }],
  pab: [{ sa_range: 2, ca_range: 3 }, {}, { sa_range: 4, ca_range: 8, ffn_range: 2 }],
  fastercache: [{ uncond_range: 2 }, {}, { attn_range: 3, uncond_range: 8 }],
  taylorseer: [{ interval: 3 }, {}, { interval: 7 }],
  fora: [{ interval: 2 }, {}, { interval: 5 }],
  // MixCache: presets, target speedups, and every ablation at a matched target of 2x (so the
  // ablations compare quality at the same compute)
  mixcache: [
    { preset: "slow" }, {}, { preset: "fast" },
    { target_speedup: 1.5 }, { target_speedup: 2 }, { target_speedup: 2.5 }, { target_speedup: 3 },
    { target_speedup: 2, trigger: false }, { target_speedup: 2, impact: false }, { target_speedup: 2, penalty: 1 },
    { target_speedup: 2, adaptive: false }, { target_speedup: 2, choose: "error" }, { target_speedup: 2, probe: false },
    { target_speedup: 2, only: "step" }, { target_speedup: 2, only: "cfg" }, { target_speedup: 2, only: "block" },
    // planned schedules (`mixcache plan --save`; left out, with a note, for a model without them)
    { schedule: "planned", target_speedup: 1.5 }, { schedule: "planned", target_speedup: 2 },
    { schedule: "planned", target_speedup: 3 }, { schedule: "planned", target_speedup: 4 },
  ],
  "mixcache-plus": [{}, { target_speedup: 1.5 }, { target_speedup: 2 }, { target_speedup: 2.5 }, { target_speedup: 3 },
    { schedule: "planned", target_speedup: 1.5 }, { schedule: "planned", target_speedup: 2 }, { schedule: "planned", target_speedup: 3 }, { schedule: "planned", target_speedup: 4 }],
};

/** The option sets a method is benched at ({} first if the map lacks it). */
export function operatingPoints(method: string): Record<string, unknown>[] {
  const listed = OPERATING_POINTS[method];
  if (!listed || listed.length === 0) return [{}];
  return listed.some((p) => Object.keys(p).length === 0) ? listed : [{}, ...listed];
}

// ---------------------------------------------------------------------------------------------
// Prompts

/** Attributes a prompt asks for; size is null where the prompt does not state it. */
export interface PromptAttrs {
  shape: string;
  colour: string;
  motion: string;
  background: string;
  size: string | null;
  /** textures dataset: the shape's surface pattern */
  pattern?: string;
}

export interface BenchPrompt {
  index: number;
  text: string;
  /** null when the prompt is not made of dataset attributes (adherence is then not scored) */
  attrs: PromptAttrs | null;
  /** true for a held-out combination, false for a training one, null when unknown (no size) */
  heldout: boolean | null;
}

const comboKey = (a: Pick<Attrs, "shape" | "colour" | "size" | "motion" | "background" | "pattern">) =>
  `${a.shape}|${a.colour}|${a.size}|${a.motion}|${a.background}|${a.pattern ?? ""}`;

type AttrLists = { shapes: string[]; colours: string[]; sizes: string[]; motions: string[]; backgrounds: string[]; patterns?: string[] };

/** The cycled target attributes of prompt k (every value of every attribute appears early). */
function cycleTarget(k: number, lists: AttrLists): Attrs {
  const at = <T,>(xs: T[], i: number) => xs[((i % xs.length) + xs.length) % xs.length];
  const out: Attrs = {
    shape: at(lists.shapes, k),
    colour: at(lists.colours, k),
    size: at(lists.sizes, k + Math.floor(k / Math.max(1, lists.sizes.length))),
    motion: at(lists.motions, k + Math.floor(k / Math.max(1, lists.motions.length))),
    background: at(lists.backgrounds, k + Math.floor(k / Math.max(1, lists.backgrounds.length))),
  };
  if (lists.patterns?.length) out.pattern = at(lists.patterns, k + 2 * Math.floor(k / lists.patterns.length));
  return out;
}

const MATCH_WEIGHTS = { shape: 3, colour: 3, motion: 3, background: 2, pattern: 2, size: 1 } as const;

function matchScore(a: Attrs, b: Attrs): number {
  let s = 0;
  for (const [k, w] of Object.entries(MATCH_WEIGHTS)) if (a[k as keyof Attrs] === b[k as keyof Attrs]) s += w;
  return s;
}

/** n deterministic bench prompts from the vocabulary; prompt k with k mod 4 = 1 is a held-out combination. */
export function benchPrompts(vocab: Vocab, n: number): BenchPrompt[] {
  const [train, held] = splitCombos(vocab);
  const lists: AttrLists = { shapes: vocab.shapes, colours: Object.keys(vocab.colours), sizes: Object.keys(vocab.sizes), motions: Object.keys(vocab.motions), backgrounds: Object.keys(vocab.backgrounds), patterns: vocab.patterns };
  const used = new Set<string>();
  const out: BenchPrompt[] = [];
  for (let k = 0; out.length < n; k++) {
    const target = cycleTarget(k, lists);
    const wantHeld = k % 4 === 1 && held.length > 0;
    const pick = (pool: Attrs[]): Attrs | null => {
      let best: Attrs | null = null;
      let bestScore = -1;
      for (const c of pool) {
        if (used.has(comboKey(c))) continue;
        const s = matchScore(c, target);
        if (s > bestScore) {
          bestScore = s;
          best = c;
        }
      }
      return best;
    };
    const a = pick(wantHeld ? held : train) ?? pick(wantHeld ? train : held);
    if (!a) break; // every combination used
    used.add(comboKey(a));
    const isHeld = held.some((h) => comboKey(h) === comboKey(a));
    out.push({ index: out.length, text: caption(vocab, a), attrs: { ...a }, heldout: isHeld });
  }
  return out;
}

function heldoutOf(vocab: Vocab, a: PromptAttrs): boolean | null {
  if (a.size === null) return null;
  const [, held] = splitCombos(vocab);
  const k = comboKey(a as Attrs);
  return held.some((h) => comboKey(h) === k);
}

/** Attributes of any prompt text: the caption template if it matches, else each attribute found
 * as a whole phrase (exactly one value each for shape, colour, motion, background; size optional). */
export function promptAttrs(vocab: Vocab, text: string): PromptAttrs | null {
  const parsed = parseCaption(vocab, text);
  if (parsed) return { ...parsed };
  const norm = ` ${text.toLowerCase().replace(/[^a-z0-9]+/g, " ").trim()} `;
  const find = (values: string[]): string[] => values.filter((v) => norm.includes(` ${v.toLowerCase()} `));
  const shape = find(vocab.shapes), colour = find(Object.keys(vocab.colours)), motion = find(Object.keys(vocab.motions));
  const background = find(Object.keys(vocab.backgrounds)), size = find(Object.keys(vocab.sizes));
  // "on a black background": the colour list shares no words with the background list in the
  // shapes vocabulary; if a vocabulary ever did, the caption template parse above handles it.
  if (shape.length !== 1 || colour.length !== 1 || motion.length !== 1 || background.length !== 1 || size.length > 1) return null;
  return { shape: shape[0], colour: colour[0], motion: motion[0], background: background[0], size: size[0] ?? null };
}

function describePrompt(vocab: Vocab, text: string, index: number): BenchPrompt {
  const attrs = promptAttrs(vocab, text);
  return { index, text, attrs, heldout: attrs ? heldoutOf(vocab, attrs) : null };
}

/**
 * n captions a tokenizer can encode, for models without vocab.json: the dataset vocabulary's
 * attribute values whose words the tokenizer knows, cycled like `benchPrompts`; the size is left
 * out of the caption when the tokenizer knows no size word.
 */
export function promptsFromTokenizer(vocab: Vocab, words: readonly string[], n: number): BenchPrompt[] {
  const known = new Set(words.map((w) => w.toLowerCase()));
  const spellable = (v: string) => v.toLowerCase().split(/\s+/).every((w) => known.has(w));
  const lists = {
    shapes: vocab.shapes.filter(spellable),
    colours: Object.keys(vocab.colours).filter(spellable),
    sizes: Object.keys(vocab.sizes).filter(spellable),
    motions: Object.keys(vocab.motions).filter(spellable),
    backgrounds: Object.keys(vocab.backgrounds).filter(spellable),
  };
  for (const [k, v] of Object.entries(lists))
    if (k !== "sizes" && v.length === 0)
      throw new UsageError(`the model's tokenizer knows no ${k.slice(0, -1)} of the shapes vocabulary, so no bench prompts can be built for it`, "pass prompts explicitly (--prompt TEXT, repeatable)");
  const template = lists.sizes.length ? vocab.caption_template : vocab.caption_template.replace(/\{size\}\s*/g, "");
  const out: BenchPrompt[] = [];
  const seen = new Set<string>();
  const total = lists.shapes.length * lists.colours.length * Math.max(1, lists.sizes.length) * lists.motions.length * lists.backgrounds.length;
  for (let k = 0; out.length < Math.min(n, total) && k < 8 * n + total; k++) {
    const t = cycleTarget(k, { ...lists, sizes: lists.sizes.length ? lists.sizes : [""] });
    const text = template.replace(/\{(\w+)\}/g, (_m, f: string) => (t as unknown as Record<string, string>)[f] ?? "");
    if (seen.has(text)) continue;
    seen.add(text);
    const attrs: PromptAttrs = { shape: t.shape, colour: t.colour, motion: t.motion, background: t.background, size: lists.sizes.length ? t.size : null };
    out.push({ index: out.length, text, attrs, heldout: heldoutOf(vocab, attrs) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Points and the whole protocol

export interface OperatingPoint {
  /** Unique within the protocol: the strategy tag, plus `#<config hash>` if two points share a tag. */
  id: string;
  method: string;
  tag: string;
  granularity: Granularity;
  /** The options as listed (what differs from the defaults). */
  options: Record<string, unknown>;
  /** The full parsed config (defaults filled in). */
  config: Record<string, unknown>;
  /** True for the strategy's default options. */
  isDefault: boolean;
  /** Hash of the config and of the calibration profiles the method may read (part of row keys). */
  configHash: string;
  /** The built strategy (reused across runs: attach() gives fresh state per generation). */
  cache: CacheStrategy;
  /** An oracle schedule (method `oracle`): runs only on the prompts and seeds it was planned on. */
  oracle?: OracleTag;
}

export interface Protocol {
  preset: PresetName;
  hash: string;
  steps: number;
  guidance: number;
  shift: number;
  sampler: SamplerName;
  negativePrompt: string;
  shape: LatentShape;
  seeds: number[];
  prompts: BenchPrompt[];
  /** Where the prompts came from. */
  promptSource: "vocab" | "tokenizer" | "explicit";
  methods: string[];
  points: OperatingPoint[];
  /** Points left out because their strategy refused to build (only when methods were not listed explicitly). */
  skipped: SkippedPoint[];
  vocab: Vocab;
  vocabPath: string;
  modelFingerprint: string;
  /** The oracle file's schedules run as `oracle` points (null: none). */
  oracle: OracleInfo | null;
  /** Notes for the results' warnings (e.g. oracle rows covering only part of the bench). */
  notes: string[];
}

export interface ProtocolOptions {
  preset?: PresetName;
  /** Method names (default: every registered strategy); `none` is always included. */
  methods?: string[];
  /** Explicit prompts instead of the preset's list. */
  prompts?: string[];
  /** Number of prompts (default: the preset's); the first n of the list. */
  nPrompts?: number;
  steps?: number;
  seeds?: number[];
  /** Dataset vocabulary for prompts and adherence (default: the model's vocab.json, else data/vocab.json). */
  vocabPath?: string;
  /** The latent size (default: the model's own); diffusers folders take it from --frames / --height / --width. */
  shape?: LatentShape;
  /** An oracle file (oracle.ts readOracle): its schedules become `oracle` points. */
  oracle?: OracleFile;
}


/** Fingerprint of a model folder: configs and tokenizer by content, weight files by size and mtime. */
export function modelFingerprint(m: Pick<LoadedModel, "dir" | "transformerDir" | "config" | "name">): string {
  const parts: string[] = [m.name, canonicalJson(m.config)];
  const files = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort().map((f) => join(dir, f)) : []);
  for (const f of [...files(m.transformerDir), ...files(join(m.dir, "text_encoder")), ...files(join(m.dir, "tokenizer")), join(m.dir, "mixcache.json")]) {
    if (!existsSync(f)) continue;
    const st = statSync(f);
    if (!st.isFile()) continue;
    parts.push(f.endsWith(".json") ? `${f}:${sha256(readFileSync(f), 12)}` : `${f}:${st.size}:${Math.round(st.mtimeMs)}`);
  }
  return sha256(parts.join("\n"), 12);
}

/** Content hash of the calibration profiles a method may read: cache_profiles/<p>.json whose
 * name starts with the method's family, the method name up to its first dash (teacache.json for
 * teacache; mixcache.json and mixcache-plans.json, the stored schedules, for mixcache and
 * mixcache-plus), so a resumed bench reruns a method's rows after it was re-calibrated or
 * re-planned. */
export function profilesHash(profilesDir: string, method: string): string {
  if (!existsSync(profilesDir)) return "";
  const family = method.split("-")[0];
  const parts: string[] = [];
  for (const f of readdirSync(profilesDir).sort()) {
    if (!f.endsWith(".json")) continue;
    if (f.slice(0, -5).split("-")[0] === family) parts.push(`${f}:${sha256(readFileSync(join(profilesDir, f)), 12)}`);
  }
  return parts.join(",");
}

/** A point that could not be built (non-strict mode only). */
export interface SkippedPoint {
  method: string;
  options: Record<string, unknown>;
  error: string;
}

/**
 * Build every operating point of the given methods (registry order, `none` first). Strict (the
 * default): an invalid point is a ConfigError. Non-strict (benching "every registered method"):
 * a point whose strategy refuses to build is left out and listed in `skipped`, so one method
 * (e.g. one that needs a calibration profile this model lacks) does not stop the whole bench.
 * Planned MixCache points (`schedule: "planned"`) are optional in both modes: a model without
 * stored schedules is benched without them.
 */
export function buildPoints(methods: readonly string[], profilesDir: string, skipped?: SkippedPoint[]): OperatingPoint[] {
  const points: OperatingPoint[] = [];
  const order = ["none", ...STRATEGIES.map((s) => s.name).filter((n) => n !== "none" && methods.includes(n))];
  for (const method of order) {
    const def = findStrategy(method);
    const defaults = canonicalJson(parseKnobs(method, def.knobs, {}));
    const seen = new Set<string>();
    for (const options of operatingPoints(method)) {
      let cache: CacheStrategy;
      try {
        cache = makeCache(method, options, { profilesDir });
      } catch (e) {
        // planned schedules exist only for models that `mixcache plan --save` ran on: optional points
        if ((skipped || options.schedule === "planned") && method !== "none") {
          if (!skipped) continue;
          skipped.push({ method, options: { ...options }, error: (e as Error).message });
          continue;
        }
        if (e instanceof MixCacheError) throw new ConfigError(`bench operating point ${method} ${JSON.stringify(options)} is invalid: ${e.message}`, "fix OPERATING_POINTS in src/bench/protocol.ts (or where the method extends it)");
        throw e;
      }
      const config = { ...cache.config };
      const cj = canonicalJson(config);
      if (seen.has(cj)) continue; // the same point listed twice
      seen.add(cj);
      points.push({
        id: cache.tag, method, tag: cache.tag, granularity: def.granularity, options: { ...options }, config,
        isDefault: cj === defaults, configHash: sha256(`${cj}|${profilesHash(profilesDir, method)}`, 8), cache,
      });
    }
  }
  const byTag = new Map<string, number>();
  for (const p of points) byTag.set(p.tag, (byTag.get(p.tag) ?? 0) + 1);
  for (const p of points) if (byTag.get(p.tag)! > 1) p.id = `${p.tag}#${p.configHash}`;
  return points;
}

/** Validate a method list against the registry (UsageError listing the valid names). */
export function resolveMethods(methods: readonly string[] | undefined): string[] {
  const valid = strategyNames();
  if (!methods) return valid;
  const out: string[] = [];
  for (const m of methods) {
    if (!valid.includes(m)) throw new UsageError(`unknown method "${m}"`, `valid methods: ${valid.join(", ")}`);
    if (!out.includes(m)) out.push(m);
  }
  if (out.length === 0) throw new UsageError("no methods given", `valid methods: ${valid.join(", ")}`);
  return out.includes("none") ? out : ["none", ...out];
}

export function buildProtocol(model: LoadedModel, o: ProtocolOptions = {}): Protocol {
  const preset = PRESETS[o.preset ?? "quick"];
  if (!preset) throw new UsageError(`unknown preset "${o.preset}"`, `use one of: ${PRESET_NAMES.join(", ")}`);
  if (!model.hasTextEncoder)
    throw new UsageError(`model ${model.name} has no text encoder, so the bench cannot encode its prompts`, "bench a model folder with its text encoder (MixCache folders, diffusers Wan2.1 / HunyuanVideo folders with text_encoder/ and tokenizer/)");
  // the embedded models' word tokenizer builds prompts from the vocabulary; other text encoders take --prompt
  if (!model.tokenizer && !(o.prompts && o.prompts.length))
    throw new UsageError(`model ${model.name} encodes free text (${model.textEncoder}), so the bench has no vocabulary to build prompts from`, 'pass the prompts: --prompt "a cat walking on grass" (repeatable)');
  const shape = o.shape ?? model.latent;
  if (!shape) throw new UsageError(`model ${model.name} declares no latent shape`, "add latent to its mixcache.json, or pass --frames / --height / --width");
  const steps = o.steps ?? model.defaults.steps;
  if (!Number.isInteger(steps) || steps < 2) throw new UsageError(`the bench needs at least 2 steps, got ${steps}`);
  const seeds = o.seeds ?? preset.seeds;
  if (!seeds.length || !seeds.every(Number.isSafeInteger)) throw new UsageError(`seeds must be a non-empty list of integers, got ${JSON.stringify(seeds)}`);
  const n = o.nPrompts ?? (o.prompts ? o.prompts.length : preset.prompts);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`the number of prompts must be at least 1, got ${n}`);

  const vocabPath = o.vocabPath ?? model.vocabPath ?? DEFAULT_VOCAB_PATH;
  const vocab = loadVocab(vocabPath);
  let prompts: BenchPrompt[];
  let promptSource: Protocol["promptSource"];
  if (o.prompts && o.prompts.length) {
    prompts = o.prompts.slice(0, n).map((t, i) => describePrompt(vocab, t, i));
    promptSource = "explicit";
  } else if (model.vocabPath) {
    prompts = benchPrompts(vocab, n);
    promptSource = "vocab";
  } else {
    prompts = promptsFromTokenizer(vocab, model.tokenizer!.vocabulary, n);
    promptSource = "tokenizer";
  }
  if (prompts.length < n && o.nPrompts !== undefined)
    throw new UsageError(`asked for ${n} prompts, only ${prompts.length} distinct ones can be built`, `use --prompts ${prompts.length} or fewer`);
  const texts = new Set<string>();
  for (const p of prompts) {
    if (texts.has(p.text)) throw new UsageError(`prompt "${p.text}" is listed twice`);
    texts.add(p.text);
    model.tokenizer?.encode(p.text); // VOCAB error now rather than mid-run
  }

  let oracle: OracleInfo | null = null;
  const notes: string[] = [];
  if (o.oracle) {
    checkOracleModel(o.oracle, { name: model.name, steps, guidance: model.defaults.guidance, shift: model.defaults.shift, sampler: model.defaults.sampler });
    notes.push(...checkOraclePrompts(o.oracle, prompts.map((x) => x.text), seeds));
    const info = { prompts: o.oracle.prompts, seeds: o.oracle.seeds };
    oracle = {
      file: o.oracle.path, model: o.oracle.model, steps: o.oracle.steps, prompts: [...o.oracle.prompts], seeds: [...o.oracle.seeds], infeasible: o.oracle.infeasible,
      promptIndices: prompts.filter((x) => o.oracle!.prompts.includes(x.text)).map((x) => x.index), runSeeds: seeds.filter((x) => o.oracle!.seeds.includes(x)), note: oracleNote(info),
    };
  }

  const methods = resolveMethods(o.methods);
  const skipped: SkippedPoint[] = [];
  const points = buildPoints(methods, model.profilesDir, o.methods ? undefined : skipped);
  if (o.oracle) points.push(...buildOraclePoints(o.oracle, model.profilesDir));
  const fingerprint = modelFingerprint(model);
  const hash = sha256(canonicalJson({
    rowSchema: ROW_SCHEMA, model: fingerprint, steps, guidance: model.defaults.guidance, shift: model.defaults.shift,
    sampler: model.defaults.sampler, negativePrompt: model.defaults.negativePrompt, shape,
  }), 12);
  return {
    preset: preset.name, hash, steps, guidance: model.defaults.guidance, shift: model.defaults.shift, sampler: model.defaults.sampler,
    negativePrompt: model.defaults.negativePrompt, shape: { ...shape }, seeds: [...seeds], prompts, promptSource, methods, points, skipped,
    vocab, vocabPath, modelFingerprint: fingerprint, oracle, notes,
  };
}

/** The oracle file's schedules as points (method `oracle`, run as MixCache following each schedule). */
export function buildOraclePoints(o: OracleFile, profilesDir: string): OperatingPoint[] {
  const def = findStrategy("mixcache");
  return oraclePoints(o).map(({ id, options, oracle }) => {
    let cache: CacheStrategy;
    try {
      cache = makeCache("mixcache", options, { profilesDir });
    } catch (e) {
      if (e instanceof MixCacheError) throw new UsageError(`--oracle ${o.path}: schedule ${id} cannot run as MixCache: ${e.message.split("\n")[0]}`, "plan the oracle again for this model (mixcache plan --on-bench N ... --out FILE)");
      throw e;
    }
    const config = { ...cache.config };
    const granularity: Granularity = (["hybrid", "step", "cfg", "block"] as const).find((g) => g === oracle.set) ?? def.granularity;
    return {
      id, method: ORACLE_METHOD, tag: id, granularity, options, config, isDefault: false,
      configHash: sha256(`${canonicalJson(config)}|${profilesHash(profilesDir, "mixcache")}`, 8), cache, oracle,
    };
  });
}

/** The points that run on one group (prompt, seed): every point, oracle points only where they were planned. */
export function groupPoints(p: Pick<Protocol, "points" | "oracle">, prompt: string, seed: number): OperatingPoint[] {
  return p.points.filter((pt) => !pt.oracle || (p.oracle !== null && oracleCovers(p.oracle, prompt, seed)));
}

/** The key of one row in the journal. */
export function rowKey(protocolHash: string, p: Pick<OperatingPoint, "tag" | "configHash">, seed: number, prompt: string): string {
  return `${protocolHash}|${p.tag}#${p.configHash}|s${seed}|${prompt}`;
}
