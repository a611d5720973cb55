// The smallest consultd client, as in the README:
//   TOKEN=$(consultd token --sub 1 --role doctor) node index.mjs
import { io } from 'socket.io-client';

const url = process.env.CONSULTD_URL ?? 'http://localhost:4000';
const socket = io(url, { auth: { token: process.env.TOKEN }, reconnection: false });

socket.on('connect', () => {
  // Emitting inside the connect callback is safe: consultd never loses it.
  socket.emit('identify_as_doctor', {}, (ack) => {
    console.log('identify_as_doctor ->', JSON.stringify(ack));
    socket.disconnect();
  });
});
socket.on('connect_error', (err) => {
  console.error('refused:', err.message); // "unauthorized" or "token_expired"
  process.exitCode = 1;
});
