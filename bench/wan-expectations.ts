/**
 * `npm run bench:expect`: the README's table of Wan2.1-T2V-1.3B expectations on this machine, from
 * the numbers `npm run bench:runtime` measured (docs/runtime.json): memory from the whole-run
 * estimate (models/wan-pipeline.ts), time from the exact MACs at the measured 1.3B-shaped forward
 * rate, the VAE at its measured first-chunk rate.
 * Options: --runtime FILE (default docs/runtime.json).
 */
import { readFileSync } from "node:fs";
import { WAN21_STRIDES, estimatePipelineMemory, latentForVideo } from "../src/models/wan-pipeline.ts";
import { parseWanConfig } from "../src/models/wan/config.ts";
import { stepMacs } from "../src/models/wan/macs.ts";
import { UMT5_XXL } from "../src/models/umt5/config.ts";
import { decoderChunkMacs, wan21VaeConfig } from "../src/models/wan-vae/config.ts";
import { humanBytes } from "../src/models/wan/memory.ts";

const args = process.argv.slice(2);
const file = args.includes("--runtime") ? args[args.indexOf("--runtime") + 1] : new URL("../docs/runtime.json", import.meta.url);
const rt = JSON.parse(readFileSync(file, "utf8"));
const c = parseWanConfig({ num_attention_heads: 12, attention_head_dim: 128, ffn_dim: 8960, num_layers: 30, in_channels: 16, out_channels: 16, text_dim: 4096, freq_dim: 256, patch_size: [1, 2, 2] });
const rate = (rt.wan13b.gflops / 2) * 1e9; // MAC/s of the 1.3B-shaped forward
const comp = rt.components;
const vaeRate = comp.vae.gmacPerS * 1e9;
const vae = wan21VaeConfig();
const fmtTime = (s: number) => (s < 90 ? `${s.toFixed(0)} s` : s < 5400 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`);
console.log(`measured: umT5-XXL ${(comp.umt5.totalMs / 1000).toFixed(0)} s at ${(comp.umt5.peakRss / 2 ** 30).toFixed(2)} GiB; VAE first chunk ${(comp.vae.decodeMs / 1000).toFixed(0)} s at ${(comp.vae.peakRss / 2 ** 30).toFixed(2)} GiB, 81 frames ~${(comp.vae.extrapolated81FramesMs / 60000).toFixed(0)} min; attention at 32,760 tokens ${(comp.attention32760.ms / 1000).toFixed(0)} s at ${(comp.attention32760.peakRss / 2 ** 30).toFixed(2)} GiB; 1.3B forward ${(rate / 1e9).toFixed(0)} GMAC/s\n`);
for (const v of [{ frames: 17, height: 240, width: 416 }, { frames: 17, height: 480, width: 832 }, { frames: 33, height: 480, width: 832 }, { frames: 81, height: 480, width: 832 }]) {
  const l = latentForVideo(c, WAN21_STRIDES, v);
  const a = estimatePipelineMemory(c, l, { umt5: UMT5_XXL, vae, threads: 2 });
  const b = estimatePipelineMemory(c, l, { umt5: UMT5_XXL, vae, tile: true, threads: 2 });
  const L = l.frames * (l.height / 2) * (l.width / 2);
  const step = stepMacs(c, L, 512, true);
  const dec = decoderChunkMacs(vae, l.height, l.width, true) + (l.frames - 1) * decoderChunkMacs(vae, l.height, l.width, false);
  console.log(`| ${v.frames} x ${v.height} x ${v.width} | ${l.channels}x${l.frames}x${l.height}x${l.width} | ${L.toLocaleString("en-US")} | ${humanBytes(a.total)} (${a.stage}) | ${humanBytes(b.total)} | ${(step / 1e12).toFixed(1)} | ${fmtTime(step / rate)} | ${fmtTime((50 * step) / rate)} | ${(dec / 1e12).toFixed(1)} TMAC, ~${fmtTime(dec / vaeRate)} |`);
}
