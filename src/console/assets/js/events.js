// The live event stream, read with fetch (an EventSource cannot send the Authorization header).
// Parses server-sent events, remembers the last id, and reconnects with Last-Event-ID after a
// drop or a `close` frame, so nothing committed meanwhile is missed.

import { credential } from './api.js';

const RECONNECT_MS = 1000;

function parse(block) {
  const frame = { id: null, event: 'message', data: '' };
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') frame.id = Number(value);
    else if (field === 'event') frame.event = value;
    else if (field === 'data') frame.data += value;
  }
  return frame;
}

/**
 * Follows `/api/events/stream` after `after` (a sequence). `onEvent(event)` gets each event
 * as `GET /api/events` shows it; `onState(state, detail)` hears 'live', 'reconnecting',
 * 'closed'. Answers a function that stops following.
 */
export function follow({ after, onEvent, onState = () => {} }) {
  let last = after;
  let stopped = false;
  let controller = null;
  async function once() {
    const current = credential();
    if (!current) { stopped = true; return; }
    controller = new AbortController();
    const headers = { Authorization: `Bearer ${current.token}`, Accept: 'text/event-stream' };
    if (last !== null && last !== undefined) headers['Last-Event-ID'] = String(last);
    const response = await fetch('/api/events/stream', {
      headers, signal: controller.signal, credentials: 'omit', cache: 'no-store',
    });
    if (response.status === 401) { stopped = true; onState('closed', 'key refused'); return; }
    if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
    onState('live');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = parse(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (frame.event === 'close') {
          const reason = JSON.parse(frame.data || '{}').reason;
          if (reason === 'key_revoked') stopped = true;
          onState('closed', reason);
        } else if (frame.data) {
          if (frame.id !== null) last = frame.id;
          onEvent(JSON.parse(frame.data));
        }
      }
    }
  }
  (async () => {
    while (!stopped) {
      try {
        await once();
      } catch (error) {
        if (stopped) return;
      }
      if (stopped) return;
      onState('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, RECONNECT_MS));
    }
  })();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}
