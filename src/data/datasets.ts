/**
 * Clips of either procedural dataset from a seed, as tools/mixcache_tools/dataset.py sample_clip:
 * the first draw of the clip's Mulberry32 stream picks the combination, the renderer of the
 * vocabulary's dataset draws the rest.
 */
import { MixCacheError } from "../errors.ts";
import { Mulberry32, render, type Attrs, type ClipTensor, type Vocab } from "./shapes.ts";
import { renderTextured } from "./textures.ts";

/** A clip from a seed: attributes drawn uniformly from `combos`, then position, then pixels. */
export function sampleClip(vocab: Vocab, combos: readonly Attrs[], seed: number): { attrs: Attrs; clip: ClipTensor } {
  if (combos.length === 0) throw new MixCacheError("USAGE", "sampleClip needs at least one combination");
  const rng = new Mulberry32(seed);
  const attrs = combos[Math.floor(rng.random() * combos.length)];
  return { attrs, clip: vocab.dataset === "textures" ? renderTextured(vocab, attrs, rng) : render(vocab, attrs, rng) };
}
