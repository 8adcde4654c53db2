/**
 * Shapes the models and everything above them share (a leaf: no imports).
 */

/** A latent (for the pixel-space embedded models, the video itself): [C, F, H, W]. */
export interface LatentShape {
  channels: number;
  frames: number;
  height: number;
  width: number;
}
