/** Step- and block-range caches (residual reuse over the transformer body or the whole call). */
import type { StrategyDef } from "../strategy.ts";
import { magcache } from "./magcache.ts";
import { easycache } from "./easycache.ts";
import { fbcache } from "./fbcache.ts";
import { dbcache } from "./dbcache.ts";
import { deltaDit } from "./delta-dit.ts";

export const STEP_LEVEL: StrategyDef[] = [magcache, easycache, fbcache, dbcache, deltaDit];
