import type { FrameMessage } from '../domain/frame.js';
import type { ProcessorInfo } from './registry.js';

export interface Route {
  capability: string;
  processor: ProcessorInfo;
}

export interface RoutingDecision {
  routes: Route[];
  /** Capabilities the frame asked for that no live processor offers. */
  missing: string[];
}

/**
 * One processor per requested capability (a frame asking for nothing goes to every
 * capability on offer). Among processors of one capability: round-robin.
 */
export class RoundRobinRouter {
  private next = new Map<string, number>();

  route(frame: FrameMessage, processors: ProcessorInfo[]): RoutingDecision {
    const byCapability = new Map<string, ProcessorInfo[]>();
    for (const p of processors) {
      for (const c of p.capabilities) {
        const list = byCapability.get(c) ?? [];
        list.push(p);
        byCapability.set(c, list);
      }
    }
    const wanted = frame.capabilities.length ? frame.capabilities : [...byCapability.keys()].sort();
    const routes: Route[] = [];
    const missing: string[] = [];
    for (const capability of wanted) {
      const candidates = byCapability.get(capability);
      if (!candidates?.length) {
        missing.push(capability);
        continue;
      }
      candidates.sort((a, b) => a.id.localeCompare(b.id));
      const i = this.next.get(capability) ?? 0;
      this.next.set(capability, i + 1);
      routes.push({ capability, processor: candidates[i % candidates.length] });
    }
    return { routes, missing };
  }
}
