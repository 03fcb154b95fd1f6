import { Box, Text, useApp, useInput } from 'ink';
import { useEffect, useState } from 'react';
import type { StatusSnapshot } from '../src/ops/status-snapshot.js';

const age = (ms: number) => (ms < 1000 ? `${ms} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60_000)} min`);

function Row({ cells, widths, color }: { cells: string[]; widths: number[]; color?: string }) {
  return (
    <Box>
      {cells.map((c, i) => (
        <Box key={i} width={widths[i]}>
          <Text color={color} wrap="truncate">
            {c}
          </Text>
        </Box>
      ))}
    </Box>
  );
}

/** The live terminal view: refreshes every `intervalMs`; q, Esc or Ctrl-C quit. */
export function StatusView({ load, intervalMs }: { load: () => Promise<StatusSnapshot>; intervalMs: number }) {
  const { exit } = useApp();
  const [snap, setSnap] = useState<StatusSnapshot | undefined>();
  const [error, setError] = useState<string | undefined>();
  useInput((input, key) => {
    if (input === 'q' || key.escape || (key.ctrl && input === 'c')) exit();
  });
  useEffect(() => {
    let alive = true;
    const tick = () =>
      load().then(
        (s) => alive && (setSnap(s), setError(undefined)),
        (e: unknown) => alive && setError(String((e as Error).message)),
      );
    tick();
    const timer = setInterval(tick, intervalMs);
    return () => {
      alive = false;
      clearInterval(timer);
    };
  }, [load, intervalMs]);
  if (!snap) return <Text>{error ? `error: ${error}` : 'loading…'}</Text>;
  const drops = Object.entries(snap.recentDrops);
  return (
    <Box flexDirection="column">
      <Text bold>detektr status {snap.at} (q to quit)</Text>
      <Text bold>cameras</Text>
      <Row cells={['camera', 'fps', 'last frame', 'state']} widths={[24, 8, 14, 10]} color="gray" />
      {snap.cameras.length === 0 && <Text color="yellow"> no frame stored in the last hour</Text>}
      {snap.cameras.map((c) => (
        <Row
          key={c.cameraId}
          cells={[c.cameraId, c.fps.toFixed(1), age(c.lastFrameAgeMs), c.lastFrameAgeMs < 10_000 ? 'online' : 'stale']}
          widths={[24, 8, 14, 10]}
          color={c.lastFrameAgeMs < 10_000 ? undefined : 'yellow'}
        />
      ))}
      <Text bold>queues</Text>
      <Row cells={['stream', 'group', 'lag', 'pending']} widths={[48, 12, 8, 8]} color="gray" />
      {snap.queues.map((q) => (
        <Row key={`${q.stream} ${q.group}`} cells={[q.stream, q.group, String(q.lag ?? '?'), String(q.pending)]} widths={[48, 12, 8, 8]} />
      ))}
      <Text bold>processors</Text>
      <Row cells={['id', 'capabilities', 'queued', 'capacity', 'heartbeat']} widths={[20, 24, 8, 10, 12]} color="gray" />
      {snap.processors.map((p) => (
        <Row
          key={p.id}
          cells={[p.id, p.capabilities.join(','), String(p.queued), String(p.capacity), p.live ? age(p.heartbeatAgeMs) : 'gone']}
          widths={[20, 24, 8, 10, 12]}
          color={p.live ? undefined : 'red'}
        />
      ))}
      <Text>
        dead-letter: {snap.deadLetter} drops (5 min): {drops.length ? drops.map(([r, n]) => `${r} ${n}`).join(', ') : 'none'}
      </Text>
      {snap.cluster && <Text bold>nodes (cluster_state {snap.cluster.state})</Text>}
      {snap.cluster?.nodes.map((n) => (
        <Row
          key={n.address}
          cells={[n.address, n.role, n.slots ?? '', n.status]}
          widths={[24, 10, 24, 20]}
          color={n.status === 'ok' ? undefined : 'red'}
        />
      ))}
      {snap.errors.map((e) => (
        <Text key={e} color="red">
          {e}
        </Text>
      ))}
      {error && <Text color="red">refresh failed: {error}</Text>}
    </Box>
  );
}
