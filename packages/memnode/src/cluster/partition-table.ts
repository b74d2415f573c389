// Partition -> owners, derived deterministically from the members of a state with a ketama hash ring.
//
// The implementation lives in @tmem/protocol so that clients route with exactly the table the nodes serve
// by; this module re-exports it for the cluster code. See the protocol module for why each member gets a
// vnode count from its own capacity (consistent hashing) instead of hashring's relative weights.
export {
  MAX_VNODES,
  MIB_PER_VNODE,
  MIN_VNODES,
  computePartitionTable,
  memberKey,
  partitionTableFor,
  sameMember,
  vnodesForCapacity,
  type MemberRef,
  type PartitionTable,
} from '@tmem/protocol';
