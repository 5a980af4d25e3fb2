import mqttPacket from 'mqtt-packet';

/**
 * mqtt-packet (under both MQTT.js and Aedes) builds, on the first packet it writes, a cache
 * of 65,536 two-byte Buffers for packet ids: ~6 MB of heap a long-running process keeps for
 * good, to save allocating 2 bytes per packet. Turned off before any packet is written.
 */
export function dropPacketIdCache(): void {
  mqttPacket.writeToStream.cacheNumbers = false;
}
