export { seeded } from '../../src/sim/random'
