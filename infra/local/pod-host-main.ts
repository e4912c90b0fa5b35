import { runContainer } from '../../pod/src/container.js';
import { servePods } from './emulators/pod-host.js';

/** The shared pod host's entry (the local cloud's `--shared-pod-host`): the container's program, once per pod. */
servePods(runContainer);
