/**
 * An intrusive FIFO: the nodes carry their own links, so removing a node from the middle (a
 * queued request whose caller aborted) is O(1) and nothing is allocated per entry.
 */
export interface QueueNode {
  queuePrev: QueueNode | null;
  queueNext: QueueNode | null;
  queued: boolean;
}

export class LinkedQueue<T extends QueueNode> {
  #head: T | null = null;
  #tail: T | null = null;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(node: T): void {
    node.queuePrev = this.#tail;
    node.queueNext = null;
    node.queued = true;
    if (this.#tail) this.#tail.queueNext = node;
    else this.#head = node;
    this.#tail = node;
    this.#length++;
  }

  /** The first node, left in the queue. */
  peek(): T | null {
    return this.#head;
  }

  shift(): T | null {
    const node = this.#head;
    if (node) this.remove(node);
    return node;
  }

  remove(node: T): void {
    if (!node.queued) return;
    const prev = node.queuePrev as T | null;
    const next = node.queueNext as T | null;
    if (prev) prev.queueNext = next;
    else this.#head = next;
    if (next) next.queuePrev = prev;
    else this.#tail = prev;
    node.queuePrev = null;
    node.queueNext = null;
    node.queued = false;
    this.#length--;
  }
}
