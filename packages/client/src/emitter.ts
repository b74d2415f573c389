/** A map from event name to listener signature (an interface like `{ view: (view: View) => void }`). */
export type EventMap<Events> = { [E in keyof Events]: (...args: never[]) => void };

/** A minimal typed event emitter: listeners run synchronously, in the order they were added. */
export interface Emitter<Events extends EventMap<Events>> {
  /** Adds `listener` for `event`; adding the same listener twice has no effect. */
  on<E extends keyof Events>(event: E, listener: Events[E]): void;
  /** Removes `listener` for `event`, if it was added. */
  off<E extends keyof Events>(event: E, listener: Events[E]): void;
  /** Calls every listener of `event`; a listener that throws does not keep the others from running. */
  emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): void;
}

/**
 * Creates an emitter. A listener that throws is reported to `onListenerError`: an application bug in a
 * listener must not break the client that emits.
 */
export function createEmitter<Events extends EventMap<Events>>(
  onListenerError: (error: unknown, event: keyof Events) => void,
): Emitter<Events> {
  const listeners = new Map<keyof Events, Set<Events[keyof Events]>>();
  return {
    on(event, listener) {
      let set = listeners.get(event);
      if (set === undefined) {
        set = new Set();
        listeners.set(event, set);
      }
      set.add(listener);
    },
    off(event, listener) {
      listeners.get(event)?.delete(listener);
    },
    emit(event, ...args) {
      const set = listeners.get(event);
      if (set === undefined) return;
      // A snapshot: listeners added or removed by a listener take effect from the next emit.
      for (const listener of [...set]) {
        try {
          (listener as (...a: Parameters<Events[typeof event]>) => void)(...args);
        } catch (error) {
          onListenerError(error, event);
        }
      }
    },
  };
}
