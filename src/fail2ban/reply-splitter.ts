import { END_MARKER } from './pickle.js';

/**
 * Cuts the stream of fail2ban's replies at END_MARKER. Chunks wait apart until a reply is
 * whole and are joined once: the 100,000 bans of a jail with their times are 6.5 MB, read
 * 64 KiB at a time, and joining each chunk to those before it (or even copying each once to
 * look for the marker) cost -f more than reading the reply.
 */
export class ReplySplitter {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The last bytes received, fewer than the marker's: a marker may begin in them. */
  private tail: Buffer = Buffer.alloc(0);

  /** The replies that `chunk` completes, in order, without their marker. */
  push(chunk: Buffer): Buffer[] {
    const replies: Buffer[] = [];
    let data = chunk;
    while (data.length > 0) {
      const at = this.markerAt(data);
      if (at === undefined) {
        this.keep(data);
        break;
      }
      // Where the marker begins in what is kept and `data` together (`at` < 0: in the tail).
      const end = this.size + at;
      const whole = this.chunks.length === 0 ? data : Buffer.concat([...this.chunks, data]);
      replies.push(whole.subarray(0, end));
      data = data.subarray(at + END_MARKER.length);
      this.chunks = [];
      this.size = 0;
      this.tail = Buffer.alloc(0);
    }
    return replies;
  }

  /** Where the first marker begins relative to `data` (negative: in the tail before it), or undefined. */
  private markerAt(data: Buffer): number | undefined {
    if (this.tail.length > 0) {
      const across = Buffer.concat([this.tail, data.subarray(0, END_MARKER.length - 1)]).indexOf(END_MARKER);
      if (across >= 0) return across - this.tail.length;
    }
    const at = data.indexOf(END_MARKER);
    return at < 0 ? undefined : at;
  }

  private keep(data: Buffer): void {
    this.chunks.push(data);
    this.size += data.length;
    const last = END_MARKER.length - 1;
    this.tail = data.length >= last ? data.subarray(data.length - last) : Buffer.concat([this.tail, data]).subarray(-last);
  }
}
