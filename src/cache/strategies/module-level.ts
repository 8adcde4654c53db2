/** Module-level caches (attention / FFN outputs) and CFG-branch caches. */
import type { StrategyDef } from "../strategy.ts";
import { pab } from "./pab.ts";
import { fastercache } from "./fastercache.ts";
import { taylorseer } from "./taylorseer.ts";
import { fora } from "./fora.ts";

export const MODULE_LEVEL: StrategyDef[] = [pab, fastercache, taylorseer, fora];
