import type { PodAgent } from '../../../shared/domain/tenancy.js';
import type { Agent } from '../agent.js';
import { claudeCodeAgent } from './claude-code.js';
import { commandAgent } from './command.js';
import { runDemoAgent } from './demo.js';

/** The agent a pod's configuration names. */
export const agentFor = (agent: PodAgent): Agent => {
  switch (agent.kind) {
    case 'claude-code':
      return claudeCodeAgent(agent);
    case 'command':
      return commandAgent(agent.command);
    case 'demo':
      return runDemoAgent;
  }
};
