import { localCloudSetup } from '../support/local-cloud-process.js';

/** The integration tests run against the local cloud exactly as `npm start` starts it. */
export default localCloudSetup('infra/local/main.ts');
