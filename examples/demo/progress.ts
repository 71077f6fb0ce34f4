/**
 * A progress display for one run: a bar redrawn in place on a terminal (at most ten times a
 * second), or a plain line every 10 % when stdout is a pipe or a file. No dependency.
 */
import type { JobProgress } from './job.js';

const REDRAW_MS = 100;
const BAR_WIDTH = 24;
const CLEAR_LINE = '\r\x1b[2K';

export interface ProgressOptions {
  label: string;
  total: number;
  /** Where to draw; nothing is drawn when null (`--json`). */
  stream: NodeJS.WriteStream | null;
  /** Live state to show after the counts, e.g. `in flight 10 · queued 3 · circuit closed`. */
  status?: () => string;
}

export class Progress {
  readonly #label: string;
  readonly #total: number;
  readonly #stream: NodeJS.WriteStream | null;
  readonly #tty: boolean;
  readonly #status: (() => string) | undefined;
  readonly #started = performance.now();
  #state: JobProgress = { settled: 0, succeeded: 0, failed: 0 };
  #lastDraw = 0;
  #nextTenth = 1;
  #timer: NodeJS.Timeout | null = null;

  constructor(options: ProgressOptions) {
    this.#label = options.label;
    this.#total = options.total;
    this.#stream = options.stream;
    this.#tty = options.stream?.isTTY === true;
    this.#status = options.status;
    if (this.#tty) {
      // Redraws while nothing settles too (a run waiting out a Retry-After), so the clock moves.
      this.#timer = setInterval(() => this.#draw(), REDRAW_MS);
      this.#timer.unref();
      this.#draw();
    }
  }

  update(state: JobProgress): void {
    this.#state = state;
    if (this.#stream === null) return;
    if (this.#tty) {
      if (performance.now() - this.#lastDraw >= REDRAW_MS) this.#draw();
      return;
    }
    // Not a terminal: a line each time another tenth is done, so a CI log shows progress without a flood.
    if (this.#total > 0 && state.settled * 10 >= this.#nextTenth * this.#total) {
      this.#stream.write(`  ${this.#label}: ${this.#counts()}\n`);
      this.#nextTenth = Math.floor((state.settled * 10) / this.#total) + 1;
    }
  }

  /** Draws the final state and ends the line. */
  finish(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#stream === null || !this.#tty) return;
    this.#draw();
    this.#stream.write('\n');
  }

  #draw(): void {
    const stream = this.#stream;
    if (stream === null) return;
    this.#lastDraw = performance.now();
    const share = this.#total === 0 ? 1 : this.#state.settled / this.#total;
    const filled = Math.round(share * BAR_WIDTH);
    const bar = '█'.repeat(filled) + '░'.repeat(BAR_WIDTH - filled);
    const status = this.#status?.() ?? '';
    let line = `  ${this.#label.padEnd(11)} ${bar} ${this.#counts()}${status === '' ? '' : `  ${status}`}`;
    // A pseudo-terminal may report 0 columns; then assume a wide one rather than draw nothing.
    const columns = stream.columns > 20 ? stream.columns : 120;
    if (line.length > columns - 1) line = line.slice(0, columns - 1);
    stream.write(CLEAR_LINE + line);
  }

  #counts(): string {
    const { settled, succeeded, failed } = this.#state;
    const pct = this.#total === 0 ? 100 : Math.floor((settled / this.#total) * 100);
    const seconds = ((performance.now() - this.#started) / 1000).toFixed(1);
    return `${String(pct).padStart(3)}%  ${settled}/${this.#total}  ok ${succeeded}  failed ${failed}  ${seconds} s`;
  }
}
