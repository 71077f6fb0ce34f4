/**
 * The series of one metric under one set of leading labels, by the value of the last label,
 * each made on first use. A stream of events mostly repeats the last value (a healthy upstream
 * answers `2xx`, request after request), so that one is checked first. Label values are string
 * constants, so the check compares pointers: cheaper than a keyed lookup on every event.
 */
export class SeriesTable<S> {
  readonly #make: (value: string) => S;
  readonly #byValue = new Map<string, S>();
  #lastValue: string | undefined;
  #last: S | undefined;

  constructor(make: (value: string) => S) {
    this.#make = make;
  }

  get(value: string): S {
    if (value === this.#lastValue) return this.#last as S;
    let series = this.#byValue.get(value);
    if (series === undefined) {
      series = this.#make(value);
      this.#byValue.set(value, series);
    }
    this.#lastValue = value;
    this.#last = series;
    return series;
  }
}
