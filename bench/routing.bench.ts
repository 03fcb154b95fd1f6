// Routing decision time of the buffer, per strategy, against a trivial baseline (first
// processor of each capability) measured in the same run. Pure CPU, no Redis: this is the
// cost added per frame by the routing choice itself (the Redis hand-off is measured by the
// pipeline benchmarks). Run: npm run bench -- routing
import { LeastLoaded, RoundRobin, CameraAffinity, Router, type Candidate, type RoutingView, type Strategy } from '../src/buffer/router.js';
import { percentile, printTable } from './lib/table.js';

interface Scenario {
  name: string;
  capabilities: number;
  perCapability: number;
  cameras: number;
  /** Capabilities each frame asks for. */
  ask: number;
}

const SCENARIOS: Scenario[] = [
  { name: '4 caps x 4 procs, 1 cap/frame', capabilities: 4, perCapability: 4, cameras: 64, ask: 1 },
  { name: '4 caps x 4 procs, 2 caps/frame', capabilities: 4, perCapability: 4, cameras: 64, ask: 2 },
  { name: '2 caps x 64 procs, 1 cap/frame', capabilities: 2, perCapability: 64, cameras: 1000, ask: 1 },
];

/** The trivial baseline: the first candidate of each capability, no load or state. */
class First implements Strategy {
  readonly name = 'least-loaded' as const; // (the name is unused here)
  pick(_cap: string, _f: unknown, healthy: readonly Candidate[]): Candidate | undefined {
    return healthy[0];
  }
}

function makeView(s: Scenario): RoutingView {
  const offered = new Map<string, string[]>();
  const healthy = new Map<string, Candidate[]>();
  for (let c = 0; c < s.capabilities; c++) {
    const cap = `cap${c}`;
    const list: Candidate[] = [];
    for (let p = 0; p < s.perCapability; p++) list.push({ id: `${cap}-proc${p}`, depth: 0, capacity: 1e12 });
    offered.set(
      cap,
      list.map((x) => x.id),
    );
    healthy.set(cap, list);
  }
  return { offered, healthy };
}

const BATCH = 1000;
const BATCHES = 300;

function measure(s: Scenario, strategy: Strategy): number[] {
  const router = new Router(strategy);
  const view = makeView(s);
  const frames = Array.from({ length: 4096 }, (_, i) => ({
    cameraId: `camera-${i % s.cameras}`,
    capabilities: Array.from({ length: s.ask }, (_, k) => `cap${(i + k) % s.capabilities}`),
  }));
  const perDecisionNs: number[] = [];
  let sink = 0;
  let i = 0;
  // Warm-up, then timed batches.
  for (let w = 0; w < 50 * BATCH; w++) sink += router.decide(frames[i++ & 4095], view).kind.length;
  for (let b = 0; b < BATCHES; b++) {
    const t0 = process.hrtime.bigint();
    for (let k = 0; k < BATCH; k++) sink += router.decide(frames[i++ & 4095], view).kind.length;
    perDecisionNs.push(Number(process.hrtime.bigint() - t0) / BATCH);
  }
  if (sink === 42) console.log(''); // keep the loop from being optimised away
  return perDecisionNs.sort((a, b) => a - b);
}

const rows: Record<string, string | number>[] = [];
for (const s of SCENARIOS) {
  const base = measure(s, new First());
  const baseP50 = percentile(base, 50);
  const strategies: [string, Strategy][] = [
    ['baseline (first)', new First()],
    ['least-loaded', new LeastLoaded()],
    ['round-robin', new RoundRobin()],
    ['camera-affinity', new CameraAffinity()],
  ];
  for (const [name, strategy] of strategies) {
    const ns = name.startsWith('baseline') ? base : measure(s, strategy);
    const p50 = percentile(ns, 50);
    rows.push({
      scenario: s.name,
      strategy: name,
      'ns/decision p50': Math.round(p50),
      'ns/decision p99': Math.round(percentile(ns, 99)),
      'decisions/s (p50)': Math.round(1e9 / p50),
      'x baseline': Math.round((p50 / baseP50) * 10) / 10,
    });
  }
}
printTable(`routing decision time (${BATCHES} batches of ${BATCH} decisions per row, Node ${process.version})`, rows);
