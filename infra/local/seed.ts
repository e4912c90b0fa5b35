import type { DirectoryRepository } from '../../shared/ports.js';

/** The demo tenant `npm start` sets up: an account, a project whose admin receives approval mail, a pod. */
export const DEMO = {
  accountId: 'demo-account',
  projectId: 'demo-project',
  podId: 'demo-pod',
  adminUserId: 'demo-admin',
  adminEmail: 'admin@example.com',
  memberUserId: 'demo-member',
} as const;

export const seedDemo = async (directory: DirectoryRepository) => {
  const now = new Date().toISOString();
  await directory.createAccount({
    accountId: DEMO.accountId,
    name: 'Demo account',
    paymentStatus: 'active',
    limits: { dailyCapMicroUsd: 0, monthlyCapMicroUsd: 0 },
    updatedAt: now,
  });
  if (!(await directory.getProject(DEMO.accountId, DEMO.projectId))) {
    await directory.putProject({
      accountId: DEMO.accountId,
      projectId: DEMO.projectId,
      name: 'Demo project',
      repos: ['https://github.com/example/demo-app'],
      members: [
        { userId: DEMO.adminUserId, role: 'admin', email: DEMO.adminEmail },
        { userId: DEMO.memberUserId, role: 'member', email: 'member@example.com' },
      ],
      updatedAt: now,
    });
  }
  if (!(await directory.getPod(DEMO.accountId, DEMO.podId))) {
    await directory.putPod({
      accountId: DEMO.accountId,
      podId: DEMO.podId,
      name: 'Demo pod (scripted agent)',
      cpu: 1024,
      memoryMiB: 2048,
      agent: { kind: 'demo' },
      hooks: {},
      checkpoints: ['plan', 'commit'],
      env: {},
      secrets: {},
      enabled: true,
      maxDurationSeconds: 3600,
      approvalWindowSeconds: 86_400,
      runBudgetMicroUsd: 0,
      updatedAt: now,
    });
  }
  return DEMO;
};
