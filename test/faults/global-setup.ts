import { localCloudSetup } from '../support/local-cloud-process.js';

/** The fault suite runs against a local cloud of its own, with short waits (test/faults/local-cloud.ts). */
export default localCloudSetup('test/faults/local-cloud.ts');
