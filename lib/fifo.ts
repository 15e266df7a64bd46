// A first-in first-out queue with O(1) push and shift: an array and a read cursor, compacted once the
// consumed prefix is the larger half (Array.prototype.shift is O(n), quadratic over a long backlog).

export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The oldest item, removed; undefined when empty. */
  shift(): T | undefined {
    if (this.head === this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return item;
  }

  /** Removes and returns everything queued now, oldest first. */
  drain(): T[] {
    const all = this.items.slice(this.head) as T[];
    this.items.length = 0;
    this.head = 0;
    return all;
  }
}
