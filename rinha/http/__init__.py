"""The lean HTTP/1.1 pieces on trio streams: server, client, responses, listening addresses."""
