/**
 * Every cache strategy, declared as data: adding one is a file in strategies/ plus one line here.
 */
import { ConfigError, closest } from "../errors.ts";
import { parseKnobs, type KnobDef } from "./knobs.ts";
import type { CacheStrategy, Granularity, StrategyEnv } from "../pipeline/hooks.ts";
import type { StrategyDef } from "./strategy.ts";
import { none } from "./strategies/none.ts";
import { fewerSteps } from "./strategies/fewer-steps.ts";
import { teacache } from "./strategies/teacache.ts";
import { STEP_LEVEL } from "./strategies/step-level.ts";
import { MODULE_LEVEL } from "./strategies/module-level.ts";
import { mixcache, mixcachePlus } from "./strategies/mixcache.ts";

export const STRATEGIES: StrategyDef[] = [none, fewerSteps, teacache, ...STEP_LEVEL, ...MODULE_LEVEL, mixcache, mixcachePlus];

export function strategyNames(): string[] {
  return STRATEGIES.map((s) => s.name);
}

export function findStrategy(name: string): StrategyDef {
  const def = STRATEGIES.find((s) => s.name === name);
  if (!def) throw new ConfigError(`unknown cache strategy "${name}" (did you mean ${closest(name, strategyNames(), 1)[0]}?)`, `valid strategies: ${strategyNames().join(", ")}; see \`mixcache caches\``);
  return def;
}

/**
 * Build a strategy from a name and raw options (validated strictly). `env` gives the model folder's
 * cache_profiles/ (a loaded model works as env: makeCache("mixcache", {}, model)). Without a
 * profilesDir the strategy carries `forModel`, and generate() builds it for the model it runs on;
 * pass profilesDir: "" to run a strategy without any profile on purpose.
 */
export function makeCache(name: string, options: Record<string, unknown> = {}, env: StrategyEnv = {}): CacheStrategy {
  const def = findStrategy(name);
  const config = parseKnobs(name, def.knobs, options);
  const built = def.build(config, env);
  if (env.profilesDir !== undefined) return built;
  return Object.assign(built, { forModel: (e: StrategyEnv) => def.build(config, e) });
}

export function describeStrategies(): Array<{ name: string; granularity: Granularity; summary: string; source: string; knobs: KnobDef[] }> {
  return STRATEGIES.map((s) => ({ name: s.name, granularity: s.granularity, summary: s.summary, source: s.source, knobs: [...s.knobs] }));
}

