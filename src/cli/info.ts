import { inspectModel } from "../models/load.ts";
import { stageMacs, stepMacs, promptMacs } from "../models/wan/macs.ts";
import { dimOf } from "../models/wan/config.ts";
import { estimateMemory, humanBytes } from "../models/wan/memory.ts";
import { helpText, parseArgs, type Command } from "./args.ts";
import { HELP_FLAG, JSON_FLAG, MODEL_FLAG, humanCount, noPositionals } from "./common.ts";

const FLAGS = [MODEL_FLAG, JSON_FLAG, HELP_FLAG];

export const infoCommand: Command = {
  name: "info",
  summary: "print a model's config, parameter count and MACs per step",
  async run(argv) {
    const a = parseArgs("info", argv, FLAGS);
    if (a.flags.help) {
      process.stdout.write(helpText("Usage: mixcache info [--model DIR] [--json]", this.summary, FLAGS));
      return 0;
    }
    noPositionals("info", a.positionals, "mixcache info [--model DIR] [--json]");
    const m = inspectModel(a.flags.model as string | undefined);
    const c = m.config;
    const lat = m.latent;
    const grid = lat ? [lat.frames / c.patch_size[0], lat.height / c.patch_size[1], lat.width / c.patch_size[2]] : null;
    const L = grid ? grid[0] * grid[1] * grid[2] : null;
    const S = 16;
    const macs = L !== null ? stageMacs(c, L, S) : null;
    const perStep = L !== null ? stepMacs(c, L, S, m.defaults.guidance > 1) : null;
    const mem = lat ? estimateMemory(c, lat) : null;
    const out = {
      name: m.name, dir: m.dir, family: "wan2.1", config: c, width: dimOf(c), parameters: m.parameters,
      latent: lat, tokens: L, text_tokens: S, defaults: m.defaults, text_encoder: m.hasTextEncoder,
      macs_per_step: perStep, macs_per_prompt: promptMacs(c, S), macs_per_call: macs,
      memory_estimate_bytes: mem ? { total: mem.total, weights: mem.weights, activations: mem.activations, stage: mem.stage, state: mem.state, threads: mem.threads } : null,
    };
    if (a.flags.json) {
      process.stdout.write(JSON.stringify(out) + "\n");
      return 0;
    }
    const lines = [
      `model       ${m.name}  (${m.dir})`,
      `family      Wan2.1 transformer, ${c.num_layers} blocks, width ${dimOf(c)} (${c.num_attention_heads} heads x ${c.attention_head_dim}), ffn ${c.ffn_dim}`,
      `parameters  ${m.parameters.toLocaleString("en-US")} (${humanCount(m.parameters)})`,
      `patch       [${c.patch_size}]  in/out channels ${c.in_channels}/${c.out_channels}  text_dim ${c.text_dim}  freq_dim ${c.freq_dim}`,
      lat ? `latent      ${lat.channels}x${lat.frames}x${lat.height}x${lat.width} -> ${L} tokens (grid ${grid!.join("x")})` : "latent      (not declared: pass a shape through the API)",
      `text        ${m.hasTextEncoder ? "built-in word tokenizer + embedding encoder" : "no text encoder in this folder (API takes embeddings)"}`,
      `defaults    ${m.defaults.sampler}, ${m.defaults.steps} steps, guidance ${m.defaults.guidance}, shift ${m.defaults.shift}`,
      perStep !== null ? `MACs/step   ${humanCount(perStep)} (both CFG branches; per call: sa ${humanCount(macs!.sa)}, ca ${humanCount(macs!.ca)}, ffn ${humanCount(macs!.ffn)})` : "",
      perStep !== null ? `MACs/run    ${humanCount(perStep * m.defaults.steps)} at ${m.defaults.steps} steps` : "",
      mem ? `memory      about ${humanBytes(mem.total)} (weights ${humanBytes(mem.weights)}, largest stage ${mem.stage} ${humanBytes(mem.activations)}, held tensors ${humanBytes(mem.state)}, threads ${humanBytes(mem.threads)})` : "",
    ].filter(Boolean);
    process.stdout.write(lines.join("\n") + "\n");
    return 0;
  },
};
