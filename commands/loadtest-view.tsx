import { Box, Text } from 'ink';
import type { LoadtestProgress } from '../src/ops/loadtest.js';

/** Live loadtest progress on a TTY (plain lines on stderr otherwise). */
export function LoadtestView({ p, durationMs }: { p?: LoadtestProgress; durationMs: number }) {
  if (!p) return <Text>starting…</Text>;
  const done = Math.min(1, p.elapsedMs / durationMs);
  const width = 30;
  const bar = '█'.repeat(Math.round(done * width)).padEnd(width, '·');
  const rate = p.elapsedMs > 0 ? (p.sent / (p.elapsedMs / 1000)).toFixed(1) : '0';
  const finished = p.completed + p.failed + p.dropped;
  return (
    <Box flexDirection="column">
      <Text>
        {p.phase === 'sending' ? 'sending ' : 'draining'} {bar} {(p.elapsedMs / 1000).toFixed(0)} s
      </Text>
      <Text>
        sent {p.sent} ({rate}/s) completed {p.completed} failed {p.failed} dropped {p.dropped} send errors {p.sendErrors}
      </Text>
      <Text>
        in flight {p.inFlight} capture lag {p.captureLag ?? '-'} accounted {p.sent ? ((100 * finished) / p.sent).toFixed(1) : '0'}%
      </Text>
    </Box>
  );
}
