import type { Socket } from 'node:net';

/**
 * Lets every packet written to one client in one event-loop turn go out in one system call.
 * Aedes 1.x writes each packet on its own with mqtt-packet's writeToStream, which corks the
 * socket and uncorks it on the next tick (checked on aedes 1.2.0, mqtt-packet 9.0.2): one
 * writev per packet and client, a third of a loaded broker's time. Here the socket's uncork
 * waits for the next turn (setImmediate), so the packets a busy broker writes to the same
 * client meanwhile join that writev. Aedes destroys a connection right after its last
 * packet (a refusing CONNACK), so destroy() flushes first. test/unit/broker/coalesce-writes.test.ts
 * fails if Aedes stops writing this way.
 */
export function coalesceWrites(socket: Socket): void {
  const uncork = socket.uncork.bind(socket);
  const destroy = socket.destroy.bind(socket);
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    while (socket.writableCorked > 0) uncork();
  };
  socket.uncork = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flush);
  };
  socket.destroy = (error?: Error) => {
    flush();
    return destroy(error);
  };
}
