/** Step- and block-range caches (residual reuse over the transformer body). */
import type { StrategyDef } from "../registry.ts";

export const STEP_LEVEL: StrategyDef[] = [];
