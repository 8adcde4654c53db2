/**
 * Evaluate an embedded model's own uncached outputs (its acceptance numbers): adherence (colour,
 * shape, motion, background; on the textures dataset also the surface pattern and the reference-free
 * quality score) on a fixed prompt list that includes held-out attribute combinations, a contact
 * sheet of 8 prompts, and the model card (README.md) built from training.json + evaluation.json.
 * Used by `mixcache evaluate`, which writes them only where it is told to (--save or --out).
 */
import { UsageError } from "../errors.ts";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MixCacheError } from "../errors.ts";
import type { LoadedModel } from "../models/load.ts";
import { generate } from "../pipeline/generate.ts";
import { allCombos, caption, loadVocab, splitCombos, type Attrs, type Vocab } from "../data/shapes.ts";
import { aggregateAdherence, detectAdherence, scoreAdherence, type AdherenceSummary } from "../metrics/adherence.ts";
import { aggregateTextureAdherence, detectTextureAdherence, scoreTextureAdherence, textureQuality, type TextureAdherenceScore } from "../metrics/texture-adherence.ts";
import type { Video } from "../pipeline/generate.ts";
import { writeContactSheet } from "../media/png.ts";
import { writeFileAtomic } from "../util/atomic.ts";
import { dimOf } from "../models/wan/config.ts";

/**
 * Fixed evaluation prompts: `n` combinations (default 24), every third one held out, the rest from
 * the training split, spread so that every attribute value appears (deterministic stride walks).
 */
export function evaluationPrompts(vocab: Vocab, n = 24): Array<{ attrs: Attrs; prompt: string; heldOut: boolean }> {
  const [train, held] = splitCombos(vocab);
  const max = train.length + held.length;
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new MixCacheError("USAGE", `the number of evaluation prompts must be an integer in 1..${max} (the vocabulary's attribute combinations), got ${n}`, "pass e.g. --prompts 24 (the default)");
  const nHeld = Math.min(held.length, Math.round(n / 3));
  const pick = (list: Attrs[], k: number) => {
    const out: Attrs[] = [];
    if (k <= 0 || !list.length) return out; // k = 0 made the stride Infinity and gcd recurse forever
    let stride = Math.max(1, Math.floor(list.length / k));
    while (gcd(stride, list.length) !== 1) stride++;
    for (let j = 0; out.length < k && j < list.length; j++) out.push(list[(j * stride + 7) % list.length]);
    return out;
  };
  const items = [...pick(train, n - nHeld).map((a) => ({ a, h: false })), ...pick(held, nHeld).map((a) => ({ a, h: true }))];
  return items.map(({ a, h }) => ({ attrs: a, prompt: caption(vocab, a), heldOut: h }));
}
const gcd = (a: number, b: number): number => {
  while (b) [a, b] = [b, a % b];
  return a;
};

/** Adherence rates; `pattern`, `texture` (background class and pattern both right) and the mean
 * reference-free `quality` on the textures dataset. */
export type EvalSummary = AdherenceSummary & { pattern?: number; texture?: number; quality?: number };

export interface ModelEvaluation {
  model: string;
  dataset: string;
  created: string;
  settings: { steps: number; guidance: number; shift: number; sampler: string; seed: number };
  prompts: number;
  all: EvalSummary;
  train: EvalSummary;
  heldOut: EvalSummary;
  targets: { colour: number; motion: number; shape: number; texture?: number };
  met: boolean;
  perPrompt: Array<{ prompt: string; heldOut: boolean; detected: { colour: string; shape: string; motion: string; background: string; pattern?: string }; quality?: number }>;
  wallS: number;
}

type Scored = TextureAdherenceScore & { quality?: number };

function summarise(xs: Scored[], textures: boolean): EvalSummary {
  if (!textures) return aggregateAdherence(xs);
  const t = aggregateTextureAdherence(xs);
  const q = xs.length ? xs.reduce((a, x) => a + (x.quality ?? 0), 0) / xs.length : 0;
  return { n: t.n, colour: t.colour, shape: t.shape, motion: t.motion, background: t.background, all: t.all, mean: t.mean, pattern: t.pattern, texture: t.texture, quality: q };
}

/**
 * Generate and score the evaluation prompts. With `outDir`, writes evaluation.json, samples.png and
 * the model card (README.md) there; the model folder itself only when outDir is model.dir.
 */
export async function evaluateModel(model: LoadedModel, o: { n?: number; seed?: number; steps?: number; outDir?: string; onStep?: (d: number, t: number) => void } = {}): Promise<ModelEvaluation> {
  if (!model.vocabPath) throw new MixCacheError("USAGE", `model ${model.name} has no vocab.json: adherence needs its dataset vocabulary`, "evaluate an embedded model (reference or textures)");
  const vocab = loadVocab(model.vocabPath);
  const textures = vocab.dataset === "textures";
  const list = evaluationPrompts(vocab, o.n ?? 24);
  const steps = o.steps ?? model.defaults.steps;
  const seed = o.seed ?? 0;
  const t0 = performance.now();
  const scores: Scored[] = [], sTrain: Scored[] = [], sHeld: Scored[] = [];
  const perPrompt: ModelEvaluation["perPrompt"] = [];
  const clips: Array<Video & { channels: 3 }> = [];
  let done = 0;
  for (const item of list) {
    const r = await generate({ model, prompt: item.prompt, seed, steps, onStep: () => o.onStep?.(++done, list.length * steps) });
    const clip = { data: r.video.data, dims: [3, r.video.frames, r.video.height, r.video.width] };
    let s: Scored;
    if (textures) {
      const det = detectTextureAdherence(clip, vocab);
      s = { ...scoreTextureAdherence(det, item.attrs), quality: textureQuality(clip, vocab, item.attrs) };
      perPrompt.push({ prompt: item.prompt, heldOut: item.heldOut, detected: { colour: det.colour, shape: det.shape, motion: det.motion, background: det.background, pattern: det.pattern }, quality: s.quality });
    } else {
      const det = detectAdherence(clip, vocab);
      s = { ...scoreAdherence(det, item.attrs), pattern: 0, texture: 0 };
      perPrompt.push({ prompt: item.prompt, heldOut: item.heldOut, detected: { colour: det.colour, shape: det.shape, motion: det.motion, background: det.background } });
    }
    scores.push(s);
    (item.heldOut ? sHeld : sTrain).push(s);
    clips.push({ ...r.video, channels: 3 as const });
  }
  const all = summarise(scores, textures);
  const targets: ModelEvaluation["targets"] = textures ? { colour: 0.9, motion: 0.8, shape: 0.6, texture: 0.6 } : { colour: 0.9, motion: 0.8, shape: 0.6 };
  const ev: ModelEvaluation = {
    model: model.name, dataset: vocab.dataset ?? "shapes", created: new Date().toISOString(),
    settings: { steps, guidance: model.defaults.guidance, shift: model.defaults.shift, sampler: model.defaults.sampler, seed },
    prompts: list.length, all, train: summarise(sTrain, textures), heldOut: summarise(sHeld, textures), targets,
    met: all.colour >= targets.colour && all.motion >= targets.motion && all.shape >= targets.shape && (targets.texture === undefined || (all.texture ?? 0) >= targets.texture),
    perPrompt, wallS: (performance.now() - t0) / 1000,
  };
  if (o.outDir) {
    // contact sheet of 8 prompts (held-out ones included), one row per prompt
    const idx = [0, 1, 2, 3, 4, list.length - 3, list.length - 2, list.length - 1].filter((i, k, a) => i >= 0 && i < list.length && a.indexOf(i) === k);
    writeContactSheet(join(o.outDir, "samples.png"), idx.map((i) => clips[i]), { labels: idx.map((i) => `${list[i].prompt}${list[i].heldOut ? " (held out)" : ""}`), scale: 3 });
    writeFileAtomic(join(o.outDir, "evaluation.json"), JSON.stringify(ev, null, 1) + "\n");
    writeModelCard(model, ev, o.outDir);
  }
  return ev;
}

const pct = (x: number) => `${(100 * x).toFixed(0)}%`;

interface TrainingStage {
  num_attention_heads: number;
  attention_head_dim: number;
  /** dataset of the stage (absent: shapes) */
  dataset?: string;
  until_samples: number;
}

/** Model-card lines for the earlier stages a run trained under (train.py --init-from): other head
 * splits of the same shapes, or another dataset (the textures model continues the reference run). */
function stagesNote(stages: TrainingStage[], c: { num_attention_heads: number; attention_head_dim: number }, dataset: string): string[] {
  if (!stages.length) return [];
  const parts = stages.map((g) => `${g.dataset && g.dataset !== dataset ? `the ${g.dataset} dataset with ` : ""}${g.num_attention_heads} heads x ${g.attention_head_dim} up to ${g.until_samples.toLocaleString("en-US")} samples`);
  return ["", `Stages of the run: ${parts.join(", then ")}; ${dataset === "shapes" ? "" : `the ${dataset} dataset with `}${c.num_attention_heads} heads x ${c.attention_head_dim} since (same parameter shapes, continued with \`tools/train.py --init-from\`; token embeddings carried over by word; see \`tools/mixcache_tools/reference_config.py\` for the head split). Sample counts include the earlier stages.`];
}

export function writeModelCard(model: LoadedModel, ev: ModelEvaluation | null, outDir: string = model.dir): void {
  const trPath = join(model.dir, "training.json");
  const tr = existsSync(trPath) ? JSON.parse(readFileSync(trPath, "utf8")) : null;
  if (model.family !== "wan") throw new UsageError(`model ${model.name}: model cards are written for the embedded Wan2.1-architecture models`, "pass --model reference or textures");
  const c = model.config;
  const curve: Array<{ samples: number; loss: number }> = tr?.loss_curve ?? [];
  const pts = curve.filter((_, i) => i % Math.max(1, Math.floor(curve.length / 12)) === 0 || i === curve.length - 1);
  const vocab = model.vocabPath ? loadVocab(model.vocabPath) : null;
  const combos = vocab ? allCombos(vocab).length : 0;
  const textures = vocab?.dataset === "textures";
  const name = textures ? "textures" : "reference";
  const lines = [
    `# ${model.name}`,
    "",
    ...(textures
      ? [
          "The embedded textures model of MixCache: a small text-to-video diffusion transformer with exactly",
          "the Wan2.1 architecture and diffusers key names, trained on the procedural textures dataset (a",
          "patterned shape moving over a stochastic textured background). The caption names the texture",
          "class, the noise decides the instance, so, as with real video models, the sampling trajectory",
          "decides which detail is drawn. It exists so that caching is measured on a trained model whose",
          "outputs depend on the trajectory; it is not a general video model.",
        ]
      : [
          "The embedded reference model of MixCache: a small text-to-video diffusion transformer with exactly",
          "the Wan2.1 architecture and diffusers key names, trained from scratch on the procedural shapes",
          "dataset (one coloured shape moving over a plain background). It exists so that caching is",
          "measured on a trained model on a 2-core CPU; it is not a general video model.",
        ]),
    "",
    "## Architecture",
    "",
    `- Wan2.1 transformer (\`WanTransformer3DModel\` config in \`transformer/config.json\`): ${c.num_layers} blocks, width ${dimOf(c)} (${c.num_attention_heads} heads x ${c.attention_head_dim}), FFN ${c.ffn_dim}, patch [${c.patch_size}], pixel space (in/out channels ${c.in_channels}, no VAE), text_dim ${c.text_dim}, freq_dim ${c.freq_dim}.`,
    `- ${model.parameters.toLocaleString("en-US")} transformer parameters; text encoder: token + position embedding over the dataset vocabulary (${model.tokenizer?.tokens.length ?? "?"} tokens, ${model.tokenizer?.maxTokens ?? "?"} positions, zero rows at padding).`,
    model.latent ? `- Clips: ${model.latent.frames} frames of ${model.latent.height}x${model.latent.width} RGB in [-1, 1] -> ${(model.latent.frames / c.patch_size[0]) * (model.latent.height / c.patch_size[1]) * (model.latent.width / c.patch_size[2])} tokens.` : "",
    `- Sampling defaults: ${model.defaults.sampler}, ${model.defaults.steps} steps, guidance ${model.defaults.guidance}, shift ${model.defaults.shift}, empty negative prompt.`,
    "",
    "## Data",
    "",
    textures
      ? `Procedural textures dataset (the \`textures\` object of \`data/vocab.json\`, \`tools/mixcache_tools/textures.py\`): ${combos} attribute combinations (shape, colour, size, motion, pattern ${vocab!.patterns!.join("/")}, background ${Object.keys(vocab!.backgrounds).join("/")}); 10% held out and never trained on. Caption: "${vocab!.caption_template}". Blade positions, sand grains, ripple phases, brick shades, the cloud field, static pixels, dot layouts and stripe phases come from each clip's random stream, not from the caption.`
      : `Procedural shapes dataset (\`data/vocab.json\`, \`tools/mixcache_tools/dataset.py\`): ${combos} attribute combinations (shape, colour, size, motion, background); 10% held out and never trained on. Caption: "a {size} {colour} {shape} {motion} on a {background} background".`,
    "",
    "## Training",
    "",
    tr
      ? `Rectified flow, logit-normal timesteps, 10% caption dropout, AdamW (lr ${tr.lr}, warm-up, cosine), gradient clipping 1, EMA ${tr.ema}, batch ${tr.batch}, on a 2-core CPU (PyTorch from Debian). **${tr.samples_seen.toLocaleString("en-US")} samples seen** (${tr.iterations} iterations) in **${(tr.wall_s / 3600).toFixed(2)} h** of training wall time; final loss ${tr.final_loss}. Exported weights: ${tr.exported_weights}.`
      : "No training record (training.json) in this folder.",
    ...stagesNote(tr?.stages ?? [], c, vocab?.dataset ?? "shapes"),
    "",
    pts.length ? "| samples | loss |\n|---:|---:|\n" + pts.map((p) => `| ${p.samples} | ${p.loss.toFixed(4)} |`).join("\n") : "",
    "",
    "## Evaluation",
    "",
  ];
  /** "met", or which targets are missed and by how much. */
  const verdict = (e: NonNullable<typeof ev>) => {
    const t = e.targets, a = e.all;
    const missed = ([["colour", a.colour, t.colour], ["motion", a.motion, t.motion], ["shape", a.shape, t.shape], ["texture", a.texture ?? 0, t.texture]] as const)
      .filter(([, got, want]) => want !== undefined && got < want)
      .map(([k, got, want]) => `${k} ${pct(got)} < ${pct(want!)}`);
    return missed.length ? `not met: ${missed.join(", ")}` : "met";
  };
  if (ev && textures) {
    const row = (label: string, x: EvalSummary) =>
      `| ${label} (${x.n}) | ${pct(x.colour)} | ${pct(x.shape)} | ${pct(x.motion)} | ${pct(x.background)} | ${pct(x.pattern ?? 0)} | ${pct(x.texture ?? 0)} | ${pct(x.all)} | ${(x.quality ?? 0).toFixed(2)} |`;
    lines.push(
      `Adherence of the model's own uncached outputs (${ev.settings.sampler}, ${ev.settings.steps} steps, guidance ${ev.settings.guidance}, seed ${ev.settings.seed}) on ${ev.prompts} fixed prompts, ${ev.heldOut.n} of them held-out combinations, scored by the pixel-based textures evaluator (\`src/metrics/texture-adherence.ts\`; texture = background class and pattern both right; quality = the reference-free 0..1 match to the dataset's statistics for the caption):`,
      "",
      "| prompts | colour | shape | motion | background | pattern | texture | all five | quality |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
      row("all", ev.all), row("training combinations", ev.train), row("held-out combinations", ev.heldOut),
      "",
      `Targets: colour >= ${pct(ev.targets.colour)}, motion >= ${pct(ev.targets.motion)}, shape >= ${pct(ev.targets.shape)}, texture >= ${pct(ev.targets.texture ?? 0)}: **${verdict(ev)}**. Reproduce: \`npx mixcache evaluate --model ${name} --save\`.`,
      "",
      "![samples](samples.png)",
      "",
      "`samples.png`: 8 of the prompts, one row each (frames left to right).",
    );
  } else if (ev) {
    lines.push(
      `Adherence of the model's own uncached outputs (${ev.settings.sampler}, ${ev.settings.steps} steps, guidance ${ev.settings.guidance}, seed ${ev.settings.seed}) on ${ev.prompts} fixed prompts, ${ev.heldOut.n} of them held-out combinations, scored by the pixel-based evaluator (\`src/metrics/adherence.ts\`):`,
      "",
      "| prompts | colour | shape | motion | background | all four |",
      "|---|---:|---:|---:|---:|---:|",
      `| all (${ev.all.n}) | ${pct(ev.all.colour)} | ${pct(ev.all.shape)} | ${pct(ev.all.motion)} | ${pct(ev.all.background)} | ${pct(ev.all.all)} |`,
      `| training combinations (${ev.train.n}) | ${pct(ev.train.colour)} | ${pct(ev.train.shape)} | ${pct(ev.train.motion)} | ${pct(ev.train.background)} | ${pct(ev.train.all)} |`,
      `| held-out combinations (${ev.heldOut.n}) | ${pct(ev.heldOut.colour)} | ${pct(ev.heldOut.shape)} | ${pct(ev.heldOut.motion)} | ${pct(ev.heldOut.background)} | ${pct(ev.heldOut.all)} |`,
      "",
      `Targets: colour >= ${pct(ev.targets.colour)}, motion >= ${pct(ev.targets.motion)}, shape >= ${pct(ev.targets.shape)}: **${verdict(ev)}**. Reproduce: \`npx mixcache evaluate --model ${name} --save\`.`,
      "",
      "![samples](samples.png)",
      "",
      "`samples.png`: 8 of the prompts, one row each (frames left to right).",
    );
  } else lines.push(`Not evaluated yet: run \`npx mixcache evaluate --model ${name} --save\`.`);
  lines.push(
    "",
    "## Files",
    "",
    "`transformer/` (config + safetensors, fp32), `text_encoder/`, `tokenizer/`, `vocab.json`, `mixcache.json` (latent shape, sampler defaults), `cache_profiles/` (TeaCache, MagCache and MixCache calibrations for these weights), `golden.safetensors` (PyTorch outputs per stage for the runtime parity test), `training.json`, `evaluation.json`.",
    "",
    "## Licence",
    "",
    "Apache-2.0, like the rest of MixCache. Trained only on procedurally generated data.",
    "",
  );
  writeFileAtomic(join(outDir, "README.md"), lines.filter((l, i, a) => !(l === "" && a[i - 1] === "")).join("\n"));
}
