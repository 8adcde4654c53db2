/** Module-level caches (attention / FFN outputs) and CFG-branch caches. */
import type { StrategyDef } from "../registry.ts";

export const MODULE_LEVEL: StrategyDef[] = [];
