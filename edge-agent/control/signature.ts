// Control signing lives with the cloud's other key handling; the agent verifies with the same code.
export * from '../../infra/security/control-signature';
