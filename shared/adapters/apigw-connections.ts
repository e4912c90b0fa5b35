import {
  type ApiGatewayManagementApiClient,
  PostToConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi';
import type { ConnectionSender } from '../ports.js';

/** Messages to the WebSocket API's connections through its @connections management API. */
export class ApiGatewayConnections implements ConnectionSender {
  constructor(private readonly client: ApiGatewayManagementApiClient) {}

  async send(connectionId: string, message: unknown): Promise<'sent' | 'gone'> {
    try {
      await this.client.send(
        new PostToConnectionCommand({ ConnectionId: connectionId, Data: JSON.stringify(message) }),
      );
      return 'sent';
    } catch (err) {
      // the client left (or API Gateway closed it): the caller forgets the connection
      if ((err as Error).name === 'GoneException') return 'gone';
      throw err;
    }
  }
}
