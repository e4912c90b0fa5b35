import type { PodRunConfig } from '../../../shared/schemas/agent-events.js';
import type { Agent } from '../agent.js';
import { claudeCodeAgent } from './claude-code.js';
import { commandAgent } from './command.js';
import { runDemoAgent } from './demo.js';

/** The agent a pod's configuration names. */
export const agentFor = (agent: PodRunConfig['agent']): Agent => {
  switch (agent.kind) {
    case 'claude-code':
      return claudeCodeAgent(agent);
    case 'command':
      return commandAgent(agent.command);
    case 'demo':
      return runDemoAgent;
  }
};
