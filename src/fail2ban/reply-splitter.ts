import { END_MARKER } from './pickle.js';

/**
 * Cuts the stream of fail2ban's replies at END_MARKER. Chunks wait apart until a reply is
 * whole and are joined once: joining each chunk to those before it copied a large reply over
 * and over (the 100,000 bans of a jail with their times are 6.5 MB, read 64 KiB at a time:
 * 0.5 to 2 s of copying on a busy 2-core machine).
 */
export class ReplySplitter {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The last bytes received, fewer than the marker's: a marker may begin in them. */
  private tail = Buffer.alloc(0);

  /** The replies that `chunk` completes, in order, without their marker. */
  push(chunk: Buffer): Buffer[] {
    const replies: Buffer[] = [];
    let data = chunk;
    while (data.length > 0) {
      const window = this.tail.length === 0 ? data : Buffer.concat([this.tail, data]);
      const at = window.indexOf(END_MARKER);
      if (at < 0) {
        this.chunks.push(data);
        this.size += data.length;
        this.tail = Buffer.from(window.subarray(Math.max(0, window.length - END_MARKER.length + 1)));
        break;
      }
      // Where the marker begins in what is kept and `data` together.
      const end = this.size - this.tail.length + at;
      const whole = this.chunks.length === 0 ? data : Buffer.concat([...this.chunks, data]);
      replies.push(whole.subarray(0, end));
      data = whole.subarray(end + END_MARKER.length);
      this.chunks = [];
      this.size = 0;
      this.tail = Buffer.alloc(0);
    }
    return replies;
  }
}
