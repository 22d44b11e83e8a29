/**
 * sluice-fleetlock's Prometheus metrics (prom-client), served at `GET /metrics` on its listener.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Every metric the server exports. One instance per server. */
export class FleetLockMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'sluice_fleetlock_requests_total',
    help: 'FleetLock requests answered, by endpoint (pre-reboot, steady-state, other) and kind (ok or a failure kind)',
    labelNames: ['endpoint', 'kind'],
    registers: [this.registry],
  });
  readonly grants = new Counter({
    name: 'sluice_fleetlock_grants_total',
    help: 'Slots taken for FleetLock clients (a holder asking again is not counted)',
    labelNames: ['group'],
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'sluice_fleetlock_request_duration_seconds',
    help: 'Time to answer a FleetLock request, by endpoint (long polls included)',
    labelNames: ['endpoint'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600],
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({
    name: 'sluice_fleetlock_requests_in_flight',
    help: 'FleetLock requests being answered now (long polls included)',
    registers: [this.registry],
  });
}
