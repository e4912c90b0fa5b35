// Registers the aws-sdk-client-mock matchers (toHaveReceivedCommandWith, ...) and their types.
import 'aws-sdk-client-mock-vitest/extend';
