// Loaded into a tmem node with `--import` when the bench runs with --cpu-prof: profiles the node's CPU for
// exactly the window of one case, on messages over the IPC channel the harness opens anyway. Node's own
// --cpu-prof would cover the whole process life, so a get case's profile would also hold the puts that filled
// it, plus start-up.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

/** A message from the bench: start profiling, or stop and write the profile to `path`. */
interface ProfileMessage {
  benchProfile: 'start' | 'stop';
  path?: string;
}

const session = new Session();
session.connect();

process.on('message', (message: ProfileMessage) => {
  void (async () => {
    if (message.benchProfile === 'start') {
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 100 });
      await session.post('Profiler.start');
      process.send?.({ benchProfile: 'started' });
    } else if (message.benchProfile === 'stop' && message.path !== undefined) {
      const { profile } = await session.post('Profiler.stop');
      writeFileSync(message.path, JSON.stringify(profile));
      process.send?.({ benchProfile: 'written', path: message.path });
    }
  })();
});
