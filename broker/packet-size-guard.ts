import type { Socket } from 'node:net';

/**
 * Closes a connection as soon as an MQTT packet header announces more than `maxBytes`.
 * Aedes would otherwise buffer up to the protocol's 256 MiB per packet before any hook
 * sees it. Reads the fixed headers from the same chunks the broker reads.
 */
export function guardPacketSize(socket: Socket, maxBytes: number, onTooBig: (announced: number) => void): void {
  let skip = 0; // bytes of the current packet body still to pass
  let header: number[] = []; // fixed-header bytes of the next packet, while incomplete
  socket.on('data', (chunk: Buffer) => {
    let offset = 0;
    while (offset < chunk.length) {
      if (skip > 0) {
        const step = Math.min(skip, chunk.length - offset);
        skip -= step;
        offset += step;
        continue;
      }
      header.push(chunk[offset++]!);
      if (header.length < 2 || (header.at(-1)! & 0x80 && header.length < 5)) continue;
      let length = 0;
      for (let i = header.length - 1; i >= 1; i--) length = length * 128 + (header[i]! & 0x7f);
      header = [];
      if (length > maxBytes) {
        onTooBig(length);
        socket.destroy();
        return;
      }
      skip = length;
    }
  });
}
